#!/usr/bin/env bun
/** The llamaport command line: the only place that reads argv and calls process.exit. */
import { init } from "./cli/commands/init.ts";
import { list } from "./cli/commands/list.ts";
import { ps } from "./cli/commands/ps.ts";
import { pull } from "./cli/commands/pull.ts";
import { run } from "./cli/commands/run.ts";
import { serve } from "./cli/commands/serve.ts";
import { show } from "./cli/commands/show.ts";
import { endpointsHelp } from "./cli/endpoints.ts";
import { commandUsage, parseArgs, usage, UsageError, type Command } from "./cli/parseArgs.ts";
import { ConfigError } from "./config/loadModelsFile.ts";
import { LlamaportError } from "./engine/EngineError.ts";
import { version } from "./server/startLlamaport.ts";

/** stdout's reader went away (`llamaport run ... | head`): not an error, as for other command-line tools. */
const readerGone = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code === "EPIPE";

async function main(): Promise<number> {
  let command: Command;
  try {
    command = parseArgs(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`llamaport: ${error.message}\n\n${error.command ? commandUsage[error.command] : usage}`);
    return 2;
  }
  try {
    return await execute(command);
  } catch (error) {
    // What a user can fix (a bad models.yaml, a model that is not there, a download that failed) is one line.
    if (error instanceof ConfigError || error instanceof LlamaportError || (error as Error).name === "ServerError") {
      process.stderr.write(`llamaport: ${(error as Error).message}\n`);
      return 1;
    }
    throw error;
  }
}

async function execute(command: Command): Promise<number> {
  switch (command.kind) {
    case "help":
      process.stdout.write(command.command ? commandUsage[command.command] : `${usage}\n${endpointsHelp()}`);
      return 0;
    case "version":
      process.stdout.write(`llamaport ${version}\n`);
      return 0;
    case "serve":
      return serve(command.settings);
    case "pull":
      return pull(command.source, command.name, command.settings);
    case "run":
      return run(command.model, command.prompt, command.settings, { verbose: command.verbose });
    case "list":
      return list(command.settings);
    case "ps":
      return ps(command.settings);
    case "show":
      return show(command.model, command.settings);
    case "init":
      return init(command.dir, command.force);
  }
}

// A write to a closed pipe fails as stdout's "error" event, which would otherwise crash with a stack trace.
process.stdout.on("error", (error) => {
  if (!readerGone(error)) throw error;
  process.exit(0);
});

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error) => {
    process.stderr.write(`llamaport: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
