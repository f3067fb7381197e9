/** Turns a registry entry's `source` into a GGUF file on disk: a path as is, `synthetic:<preset>` written by our own GGUF writer, a URL downloaded. */
import { existsSync } from "node:fs";
import { basename } from "node:path";
import { formatByteSize } from "../config/byteSize.ts";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { ensureSyntheticModel, syntheticModelPath } from "../gguf/syntheticModels.ts";
import { type DownloadOptions, downloadModel } from "./download/downloadModel.ts";
import { progressLogger } from "./download/progress.ts";
import { downloadTarget, isRemoteSource, sourceToUrl } from "./download/sources.ts";
import { LlamaportError } from "./EngineError.ts";
import type { DownloadProgress } from "./types.ts";

export interface SourceOptions extends Omit<DownloadOptions, "onProgress" | "signal"> {
  /** Where download progress is logged (every few seconds); none: not logged. */
  log?(message: string): void;
}

/** The GGUF's path, written or downloaded first when needed. */
export async function resolveModelSource(
  entry: ModelEntry,
  options: SourceOptions & { onProgress?(progress: DownloadProgress): void; signal?: AbortSignal },
): Promise<string> {
  const { source } = entry;
  if (source.startsWith("synthetic:")) {
    try {
      return await ensureSyntheticModel(source.slice("synthetic:".length), options.cacheDir);
    } catch (error) {
      throw new LlamaportError("invalid_request", `model "${entry.name}": ${(error as Error).message}`, { cause: error });
    }
  }
  if (isRemoteSource(source)) return download(entry, options);
  if (!existsSync(source))
    // The path stays in the server's log (ModelManager logs load failures): clients learn nothing about the file system.
    throw new LlamaportError("not_found", `model "${entry.name}": its GGUF file ${basename(source)} was not found`, {
      param: "model",
      cause: new Error(`GGUF file not found at ${source}`),
    });
  return source;
}

/** Downloads a remote source, logging its start, its progress every few seconds or tenth, and its end. */
async function download(
  entry: ModelEntry,
  options: SourceOptions & { onProgress?(progress: DownloadProgress): void; signal?: AbortSignal },
): Promise<string> {
  const target = downloadTarget(entry.source, options);
  if (existsSync(target) || !options.log) return downloadModel(entry.source, options);
  const { log } = options;
  const started = performance.now();
  const logProgress = progressLogger(`downloading model ${entry.name}`, log);
  let last: DownloadProgress | undefined;
  log(`downloading model ${entry.name} from ${sourceToUrl(entry.source, options.hfEndpoint)}`);
  const path = await downloadModel(entry.source, {
    ...options,
    onProgress: (progress) => {
      last = progress;
      logProgress(progress);
      options.onProgress?.(progress);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  log(`downloaded model ${entry.name} (${formatByteSize(last?.totalBytes ?? 0)}) in ${seconds.toFixed(1)} s to ${path}`);
  return path;
}

/** Where the GGUF is or will be, without writing or downloading anything; undefined for a source that cannot be placed. */
export function localModelPath(entry: ModelEntry, options: SourceOptions): string | undefined {
  const { source } = entry;
  try {
    if (source.startsWith("synthetic:")) return syntheticModelPath(source.slice("synthetic:".length), options.cacheDir);
    if (isRemoteSource(source)) return downloadTarget(source, options);
  } catch {
    return undefined;
  }
  return source;
}
