/** Turns a registry entry's `source` into a GGUF file on disk: a path as is, `synthetic:<preset>` written by our own GGUF writer, a URL downloaded. */
import { existsSync } from "node:fs";
import { basename } from "node:path";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { ensureSyntheticModel, syntheticModelPath } from "../gguf/syntheticModels.ts";
import { downloadModel, downloadTarget } from "./downloadModel.ts";
import { LlamaportError } from "./EngineError.ts";

export interface SourceOptions {
  cacheDir: string;
  hfEndpoint?: string;
}

const isRemote = (source: string) => /^(https?:\/\/|hf:)/.test(source);

/** The GGUF's path, written or downloaded first when needed. */
export async function resolveModelSource(entry: ModelEntry, options: SourceOptions): Promise<string> {
  const { source } = entry;
  if (source.startsWith("synthetic:")) {
    try {
      return await ensureSyntheticModel(source.slice("synthetic:".length), options.cacheDir);
    } catch (error) {
      throw new LlamaportError("invalid_request", `model "${entry.name}": ${(error as Error).message}`, { cause: error });
    }
  }
  if (isRemote(source)) return downloadModel(source, options);
  if (!existsSync(source))
    // The path stays in the server's log (ModelManager logs load failures): clients learn nothing about the file system.
    throw new LlamaportError("not_found", `model "${entry.name}": its GGUF file ${basename(source)} was not found`, {
      param: "model",
      cause: new Error(`GGUF file not found at ${source}`),
    });
  return source;
}

/** Where the GGUF is or will be, without writing or downloading anything; undefined for a source that cannot be placed. */
export function localModelPath(entry: ModelEntry, options: SourceOptions): string | undefined {
  const { source } = entry;
  try {
    if (source.startsWith("synthetic:")) return syntheticModelPath(source.slice("synthetic:".length), options.cacheDir);
    if (isRemote(source)) return downloadTarget(source, options);
  } catch {
    return undefined;
  }
  return source;
}
