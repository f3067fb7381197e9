/** Turns a registry entry's `source` into a GGUF file on disk: a path as is, `synthetic:<preset>` written by our own GGUF writer. */
import { existsSync } from "node:fs";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { ensureSyntheticModel } from "../gguf/syntheticModels.ts";
import { downloadModel } from "./downloadModel.ts";
import { LlamaportError } from "./EngineError.ts";

export async function resolveModelSource(entry: ModelEntry, cacheDir?: string): Promise<string> {
  const { source } = entry;
  if (source.startsWith("synthetic:")) {
    try {
      return await ensureSyntheticModel(source.slice("synthetic:".length), cacheDir);
    } catch (error) {
      throw new LlamaportError("invalid_request", `model "${entry.name}": ${(error as Error).message}`, { cause: error });
    }
  }
  if (/^(https?:\/\/|hf:)/.test(source)) return downloadModel(source, { cacheDir });
  if (!existsSync(source))
    throw new LlamaportError("not_found", `model "${entry.name}": GGUF file not found at ${source}`, { param: "model" });
  return source;
}
