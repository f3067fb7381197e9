/**
 * `llamaport pull SOURCE [--name N]`: downloads in this process (no server needed) into the shared cache and adds the
 * model to models.yaml; a server watching that file serves it at once.
 */
import { formatBytes } from "../format.ts";
import { openLocalEngine } from "../localEngine.ts";
import type { ServeSettings } from "../parseArgs.ts";
import { pullProgress } from "../pullProgress.ts";
import type { EngineFacade, PullResult } from "../../engine/types.ts";

export async function pull(source: string, name: string | undefined, settings: ServeSettings): Promise<number> {
  await using local = await openLocalEngine(settings);
  const result = await pullWithProgress(local.engine, source, name);
  if (!result) return 130;
  process.stdout.write(`${describeResult(result, source)}\n`);
  return 0;
}

/** A pull with its progress on stderr; Ctrl-C stops it (the part is kept: pulling again resumes). Undefined when stopped. */
export async function pullWithProgress(engine: Pick<EngineFacade, "pull">, source: string, name?: string): Promise<PullResult | undefined> {
  const display = pullProgress(process.stderr);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  try {
    return await engine.pull({ source, name, onProgress: (event) => display.update(event), signal: controller.signal });
  } catch (error) {
    if (!controller.signal.aborted) throw error;
    display.end();
    process.stderr.write("pull stopped; run it again to resume the download\n");
    return undefined;
  } finally {
    display.end();
    process.off("SIGINT", stop);
  }
}

function describeResult(result: PullResult, source: string): string {
  const size = formatBytes(result.sizeBytes);
  const verified = result.sha256 ? `, SHA-256 ${result.sha256.slice(0, 12)}… verified` : "";
  const where = result.savedTo ? (result.added ? `added to ${result.savedTo}` : `already in ${result.savedTo}`) : "in the registry";
  return `${result.model} (${size}${verified}) from ${source === result.model ? result.source : source}: ${where}\nrun it: llamaport run ${result.model}`;
}
