/** `llamaport serve`: starts the server and stops it gracefully on SIGTERM / SIGINT (a second signal: at once). */
import { join } from "node:path";
import { LogWriter, setProcessLog } from "../../server/LogWriter.ts";
import { startLlamaport } from "../../server/startLlamaport.ts";
import { findModelsFile, homeFolder } from "../home.ts";
import { modelsYaml } from "../initFiles.ts";
import type { ServeSettings } from "../parseArgs.ts";

/** Resolves with an exit code when the server cannot start; otherwise the process ends through the signal handlers. */
export async function serve(settings: ServeSettings): Promise<number> {
  const models = settings.models ?? findModelsFile();
  const writer = new LogWriter({ format: settings.logFormat });
  const log = writer.log;
  setProcessLog(log);
  let running: Awaited<ReturnType<typeof startLlamaport>>;
  try {
    running = await startLlamaport({
      ...settings,
      models,
      // No models.yaml: the built-in registry until one appears in the home folder, whose plugins/ is watched.
      awaitModelsFile: models ? undefined : join(homeFolder(), "models.yaml"),
      newModelsFileText: modelsYaml,
      log,
      statusLine: writer.terminal ? writer.status : undefined,
    });
  } catch (error) {
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
