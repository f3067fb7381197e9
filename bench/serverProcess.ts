/** A llamaport server in its own process serving one model on 1 thread, as the per-token benches measure it. */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { LogReader } from "../tests/support/LogReader.ts";

/**
 * Starts `llamaport serve` on a free port with a models.yaml holding the model `m` (context 1024, 1 sequence, 1 thread).
 * The server runs in its own process, as in real use: an in-process HTTP client would share its JS thread.
 */
export async function startServerProcess(modelPath: string): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = join(process.env.TMPDIR ?? "/tmp", `llamaport-bench-${process.pid}`);
  const modelsFile = join(dir, "models.yaml");
  await Bun.write(modelsFile, `models:\n  m:\n    source: ${modelPath}\n    context: 1024\n    parallel: 1\n    threads: 1\n`);
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "../src/main.ts"), "serve", "--port", "0", "--models", modelsFile], {
    stderr: "pipe",
    stdout: "ignore",
  });
  const log = new LogReader(child.stderr);
  const url = (await log.waitFor(/listening on (\S+)/, 30_000))[1]!;
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
