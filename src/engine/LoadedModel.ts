/** A model in memory: node-llama-cpp's model, its one context with `parallel` sequences, the pool in front of them and its chat template. */
import type { ChatWrapper, Llama, LlamaContext, LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { SequencePool } from "./SequencePool.ts";
import { TokenPieces } from "./TokenPieces.ts";

/** Below this file size a model defaults to one thread. */
const smallModelBytes = 64 * 1024 ** 2;

export class LoadedModel {
  private disposed = false;
  private embedding?: Promise<LlamaEmbeddingContext>;
  private endTokens?: ReadonlySet<Token>;
  private tokenPieces?: TokenPieces;

  private constructor(
    readonly entry: ModelEntry,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    readonly pool: SequencePool,
    readonly chatWrapper: ChatWrapper,
    /** How long loading took, in ms. */
    readonly loadMs: number,
  ) {}

  static async load(
    nlc: NodeLlamaCppModule,
    llama: Llama,
    entry: ModelEntry,
    modelPath: string,
    defaultThreads: number,
  ): Promise<LoadedModel> {
    const started = performance.now();
    const model = await llama.loadModel({ modelPath, gpuLayers: entry.gpuLayers });
    try {
      // Measured here: node-llama-cpp starts a thread per decode step, which costs tiny models more than the extra
      // core gives (a 1 MB model ran 10x slower on 2 threads than on 1); from ~100 MB up more threads win.
      const threads = entry.threads ?? (model.size < smallModelBytes ? 1 : defaultThreads);
      const context = await model.createContext({ contextSize: entry.context, sequences: entry.parallel, threads });
      const sequences = Array.from({ length: entry.parallel }, () => context.getSequence());
      const chatWrapper =
        entry.chatTemplate === "auto"
          ? nlc.resolveChatWrapper(model)
          : nlc.resolveChatWrapper(model, { type: entry.chatTemplate as "auto" });
      const pool = new SequencePool(sequences, entry.maxQueue);
      return new LoadedModel(entry, model, context, pool, chatWrapper, performance.now() - started);
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  /** Bytes of the weights file. */
  get sizeBytes(): number {
    return this.model.size;
  }

  /** Tokens in the vocabulary. */
  get vocabularySize(): number {
    return this.model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0;
  }

  /**
   * Tokens that end a generation: every end-of-generation token of the vocabulary (`<|eot_id|>`, `<|im_end|>`, ...
   * where the GGUF marks them), plus gemma's `<|file_separator|>` and `<|fim_prefix|>`, which node-llama-cpp's
   * LlamaCompletion also treats as the end. Collected once per model.
   */
  get endOfGenerationTokens(): ReadonlySet<Token> {
    if (!this.endTokens) {
      const tokens = new Set<Token>();
      const gemma = /^gemma2?$/.test(String(this.model.fileInfo.metadata?.general?.architecture));
      for (const token of this.model.iterateAllTokens()) {
        if (this.model.isEogToken(token)) tokens.add(token);
        else if (gemma && ["<|file_separator|>", "<|fim_prefix|>"].includes(this.model.detokenize([token], true))) tokens.add(token);
      }
      this.endTokens = tokens;
    }
    return this.endTokens;
  }

  /** Each token's own text and bytes, for reporting tokens (made on first use). */
  get pieces(): TokenPieces {
    this.tokenPieces ??= new TokenPieces(this.model);
    return this.tokenPieces;
  }

  /** Tokens one embedding input may have. */
  get embeddingContextSize(): number {
    return Math.min(this.entry.context, 2048);
  }

  /** The embedding context, created on first use: most chat models never need one. */
  embeddingContext(): Promise<LlamaEmbeddingContext> {
    if (!this.embedding) {
      const created = this.model.createEmbeddingContext({
        contextSize: this.embeddingContextSize,
        threads: this.entry.threads ?? this.context.currentThreads,
      });
      this.embedding = created;
      // Do not keep a failure: the next request tries again.
      created.catch(() => {
        if (this.embedding === created) this.embedding = undefined;
      });
    }
    return this.embedding;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Per-sequence context size actually allocated (llama.cpp may round it up). */
  get contextSize(): number {
    return this.context.contextSize;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.embedding) await (await this.embedding.catch(() => undefined))?.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}
