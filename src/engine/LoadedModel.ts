/**
 * A model in memory: node-llama-cpp's model (weights that may be shared with other context sizes of it), one context
 * with `parallel` sequences, the pool in front of them and its chat template.
 */
import type { ChatWrapper, LlamaContext, LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { chatWrapperFor } from "./chatWrapperFor.ts";
import type { ModelWeights } from "./ModelWeights.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { PromptLookupPredictor, speculates } from "./PromptLookup.ts";
import { SequencePool } from "./SequencePool.ts";
import type { ThreadBudget } from "./ThreadBudget.ts";
import { TokenPieces } from "./TokenPieces.ts";

/**
 * Below this file size a model defaults to one thread: node-llama-cpp starts ggml's worker threads afresh for every
 * decode and they meet at a spinning barrier per graph node, which costs a tiny model more than the extra core gives
 * (a 1 MB model ran 10x slower on 2 threads than on 1); from ~100 MB up more threads win on a quiet machine.
 */
export const smallModelBytes = 64 * 1024 ** 2;

/**
 * The threads a model's decode steps want: `threads` from models.yaml (fixed), else 1 for a small model, else the
 * engine's default (physical cores, or --threads), which the ThreadBudget then limits per step to the cores other
 * programs leave free.
 */
export function threadsFor(entry: ModelEntry, modelBytes: number, defaultThreads: number): { threads: number; adaptive: boolean } {
  if (entry.threads !== undefined) return { threads: entry.threads, adaptive: false };
  const threads = modelBytes < smallModelBytes ? 1 : defaultThreads;
  return { threads, adaptive: threads > 1 };
}

export class LoadedModel {
  private disposed = false;
  private embedding?: Promise<LlamaEmbeddingContext>;
  private endTokens?: ReadonlySet<Token>;
  private tokenPieces?: TokenPieces;
  private fimFileTokens?: { repo?: Token; separator?: Token };

  private constructor(
    readonly entry: ModelEntry,
    /** The weights, shared with the model's other contexts. */
    readonly weights: ModelWeights,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    /** The context size asked for: the model's `context`, or a request's larger one. */
    readonly requestedContext: number,
    readonly pool: SequencePool,
    readonly chatWrapper: ChatWrapper,
    /** How long loading took, in ms (weights included when they were loaded for it). */
    readonly loadMs: number,
  ) {}

  /** A context of `contextSize` tokens per sequence (default: the model's `context`) over `weights`, which it retains. */
  static async load(
    nlc: NodeLlamaCppModule,
    entry: ModelEntry,
    weights: ModelWeights,
    options: { defaultThreads: number; threadBudget?: ThreadBudget; contextSize?: number; startedAt?: number },
  ): Promise<LoadedModel> {
    const started = options.startedAt ?? performance.now();
    const model = weights.retain();
    try {
      const { threads, adaptive } = threadsFor(entry, model.size, options.defaultThreads);
      const contextSize = options.contextSize ?? entry.context;
      const chatWrapper = chatWrapperFor(nlc, model, entry.chatTemplate);
      let pool: SequencePool | undefined;
      const alone = () => (pool?.inUse ?? 0) <= 1;
      const context = await model.createContext({
        contextSize,
        sequences: entry.parallel,
        threads,
        // node-llama-cpp waits a macrotask for other sequences to queue their tokens before it decodes (unless every
        // sequence of the context has). A request alone on its context has nobody to wait for: decoding at once lets
        // the next token compute while this thread streams the last one out.
        batching: { dispatchSchedule: (dispatch) => (alone() ? dispatch() : setImmediate(dispatch)) },
      });
      if (adaptive) options.threadBudget?.attach(context);
      const speculative = speculates(entry.speculative, model);
      const sequences = Array.from({ length: entry.parallel }, () =>
        context.getSequence(speculative ? { tokenPredictor: new PromptLookupPredictor(nlc, entry.speculative, alone) } : {}),
      );
      pool = new SequencePool(sequences, entry.maxQueue);
      return new LoadedModel(entry, weights, model, context, contextSize, pool, chatWrapper, performance.now() - started);
    } catch (error) {
      await weights.release();
      throw error;
    }
  }

  /** Bytes of the weights file. */
  get sizeBytes(): number {
    return this.model.size;
  }

  /** The GGUF file the weights came from. */
  get modelPath(): string {
    return this.weights.modelPath;
  }

  /** The most characters one token of the vocabulary stands for. */
  get maxTokenChars(): number {
    return this.weights.maxTokenChars;
  }

  /** Aborted once the model's file changed on disk. */
  get fileChanged(): AbortSignal {
    return this.weights.fileChanged;
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

  /**
   * The fill-in-the-middle repo and file-separator tokens, as llama.cpp finds them: the GGUF's `fim_rep`/`fim_sep` ids,
   * else the vocabulary's `<|repo_name|>`-style entries. Looked up once per model.
   */
  get fileTokens(): { repo?: Token; separator?: Token } {
    if (!this.fimFileTokens) {
      const ggml = (this.model.fileInfo.metadata?.tokenizer?.ggml ?? {}) as Record<string, unknown>;
      const vocabulary = (ggml.tokens ?? []) as string[];
      const find = (key: string, texts: string[]) => {
        const id = typeof ggml[key] === "number" ? ggml[key] : texts.map((text) => vocabulary.indexOf(text)).find((i) => i >= 0);
        return id as Token | undefined;
      };
      this.fimFileTokens = {
        repo: find("fim_rep_token_id", ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
        separator: find("fim_sep_token_id", ["<|file_sep|>"]),
      };
    }
    return this.fimFileTokens;
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

  /**
   * The tokens one request may use here (prompt and reply): its own context size, else the model's `context`; never
   * more than this context holds. A request asking for the size this context was made for gets all of it.
   */
  windowFor(requested: number | undefined): number {
    const wanted = requested ?? this.entry.context;
    return wanted >= this.requestedContext ? this.contextSize : Math.min(wanted, this.contextSize);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.embedding) await (await this.embedding.catch(() => undefined))?.dispose();
    await this.context.dispose();
    await this.weights.release();
  }
}
