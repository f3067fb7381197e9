/** A model in memory: node-llama-cpp's model, its one context with `parallel` sequences, the pool in front of them and its chat template. */
import type { ChatWrapper, Llama, LlamaContext, LlamaEmbeddingContext, LlamaModel, TokenBias } from "node-llama-cpp";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { SequencePool } from "./SequencePool.ts";

/** Below this file size a model defaults to one thread. */
const smallModelBytes = 64 * 1024 ** 2;

export class LoadedModel {
  private disposed = false;
  private eosBias?: TokenBias;
  private embedding?: Promise<LlamaEmbeddingContext>;

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

  /** A bias that keeps every end-of-generation token from being sampled (made once per model). */
  noEosBias(nlc: NodeLlamaCppModule): TokenBias {
    if (!this.eosBias) {
      const bias = new nlc.TokenBias(this.model.tokenizer);
      const { eos, eot } = this.model.tokens;
      if (eos != null) bias.set(eos, "never");
      if (eot != null) bias.set(eot, "never");
      this.eosBias = bias;
    }
    return this.eosBias;
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
