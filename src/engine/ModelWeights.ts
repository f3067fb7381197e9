/** A model's weights in memory, shared by every context made from them (the model's own and per-request context sizes); freed with the last user. */
import type { Llama, LlamaModel } from "node-llama-cpp";
import type { ModelEntry } from "../config/loadModelsFile.ts";

export class ModelWeights {
  private users = 0;
  private disposed = false;
  /** Aborted when the file changes on disk: requests on these weights stop at once (see ModelManager). */
  private readonly fileChange = new AbortController();
  /** The most characters one token of the vocabulary stands for (no bound for vocabularies that drop characters). */
  readonly maxTokenChars: number;

  private constructor(
    readonly model: LlamaModel,
    /** RAM estimated from the GGUF for the weights alone, for the memory budget. */
    readonly estimatedBytes: number,
    /** The GGUF file they were loaded from. */
    readonly modelPath: string,
  ) {
    this.maxTokenChars = longestTokenChars(model);
  }

  /**
   * `onProgress` gets the fraction loaded (0 to 1) as node-llama-cpp reports it, which may be often (callers throttle),
   * and 1 at the end, whether the load succeeded or failed.
   */
  static async load(
    llama: Llama,
    entry: ModelEntry,
    modelPath: string,
    estimatedBytes: number,
    onProgress?: (fraction: number) => void,
  ): Promise<ModelWeights> {
    try {
      const model = await llama.loadModel({ modelPath, gpuLayers: entry.gpuLayers, useMmap: entry.useMmap, onLoadProgress: onProgress });
      return new ModelWeights(model, estimatedBytes, modelPath);
    } finally {
      // Done, or failed: either way whoever shows the progress can stop.
      onProgress?.(1);
    }
  }

  /** One more context uses these weights; pair with `release()`. */
  retain(): LlamaModel {
    if (this.disposed) throw new Error("the model's weights were already unloaded");
    this.users++;
    return this.model;
  }

  /** A context is done with the weights; the last one unloads them. */
  async release(): Promise<void> {
    this.users--;
    if (this.users > 0 || this.disposed) return;
    this.disposed = true;
    await this.model.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Whether the weights are memory-mapped from the file (node-llama-cpp's default where supported). */
  get mapsFile(): boolean {
    return this.model.useMmap;
  }

  /** Aborted once the file changed on disk. */
  get fileChanged(): AbortSignal {
    return this.fileChange.signal;
  }

  /** The file changed on disk: stop every request on these weights (a memory map may no longer match the file). */
  stopForFileChange(): void {
    this.fileChange.abort();
  }
}

/**
 * The longest token text of the vocabulary, in UTF-16 units. Token texts are written as the characters they stand for
 * (SentencePiece's "▁" for a space) or one character per byte (byte-level BPE), never shorter than the text they
 * cover. WordPiece and Unigram vocabularies drop whitespace while tokenizing, so they get no bound.
 */
function longestTokenChars(model: LlamaModel): number {
  const type = model.vocabularyType as string;
  if (type !== "spm" && type !== "bpe") return Number.POSITIVE_INFINITY;
  const tokens = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } }).tokenizer?.ggml?.tokens;
  if (!Array.isArray(tokens)) return Number.POSITIVE_INFINITY;
  let longest = 1;
  for (const token of tokens) if (typeof token === "string" && token.length > longest) longest = token.length;
  return longest;
}
