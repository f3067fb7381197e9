#!/usr/bin/env bun
/** The llamaport command line: the only place that reads argv and calls process.exit. */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { ConfigError } from "./config/loadModelsFile.ts";
import { parseArgs, usage, UsageError, type Command } from "./cli/parseArgs.ts";
import { LogWriter, setProcessLog } from "./server/LogWriter.ts";
import { startLlamaport, version } from "./server/startLlamaport.ts";

/** ./models.yaml, else one beside the executable (the compiled binary's folder), else none (built-in registry). */
function findModelsFile(): string | undefined {
  for (const candidate of [join(process.cwd(), "models.yaml"), join(dirname(process.execPath), "models.yaml")])
    if (existsSync(candidate)) return candidate;
  return undefined;
}

async function main(): Promise<number> {
  let command: Command;
  try {
    command = parseArgs(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`llamaport: ${error.message}\n\n${usage}`);
    return 2;
  }
  if (command.kind === "help") {
    process.stdout.write(usage);
    return 0;
  }
  if (command.kind === "version") {
    process.stdout.write(`llamaport ${version}\n`);
    return 0;
  }
  const { settings } = command;
  const writer = new LogWriter({ format: settings.logFormat });
  const log = writer.log;
  setProcessLog(log);
  let running: Awaited<ReturnType<typeof startLlamaport>>;
  try {
    running = await startLlamaport({
      ...settings,
      models: settings.models ?? findModelsFile(),
      log,
      statusLine: writer.terminal ? writer.status : undefined,
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`llamaport: ${error.message}\n`);
      return 1;
    }
    if ((error as { code?: string }).code === "EADDRINUSE") {
      process.stderr.write(
        `llamaport: cannot listen on ${settings.host}:${settings.port}: address already in use (is another llamaport running? pick another --port)\n`,
      );
      return 1;
    }
    throw error;
  }
  let stopping = false;
  const shutdown = async (signal: "SIGINT" | "SIGTERM") => {
    if (stopping) {
      // A second signal: the user does not want to wait.
      log("info", `${signal} again: exiting now`);
      process.exit(signal === "SIGINT" ? 130 : 143);
    }
    stopping = true;
    log("info", `${signal}: shutting down (running requests get up to ${settings.shutdownTimeoutMs / 1000} s; send it again to exit now)`);
    await running.stop({ graceMs: settings.shutdownTimeoutMs });
    log("info", "stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  return -1; // keep running
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error) => {
    process.stderr.write(`llamaport: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
