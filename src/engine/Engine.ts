/** The engine: one object that serves every protocol's chat, completion, embedding and token calls over the model registry. */
import { statSync } from "node:fs";
import type { ModelEntry, ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { decode } from "./decode.ts";
import { grammarFor } from "./grammarFor.ts";
import { LlamaportError } from "./EngineError.ts";
import { ModelManager } from "./ModelManager.ts";
import { ModelRegistry } from "./ModelRegistry.ts";
import { physicalCores } from "./physicalCores.ts";
import { getLlamaRuntime, importNodeLlamaCpp } from "./nodeLlamaCpp.ts";
import { renderChat, renderRaw, type RenderedPrompt } from "./renderPrompt.ts";
import { resolveSampling } from "./sampling.ts";
import { StreamingGeneration, type GenerationSink } from "./StreamingGeneration.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type {
  ChatRequest,
  CompletionRequest,
  EmbedRequest,
  EmbedResult,
  EngineFacade,
  Generation,
  GenerationSummary,
  GenerateOptions,
  ModelInfo,
} from "./types.ts";

export interface EngineOptions {
  /** Threads for models that do not set their own; default: the physical cores. */
  threads?: number;
  gpu?: "auto" | false;
  cacheDir?: string;
  log?: (message: string) => void;
}

export class Engine implements EngineFacade {
  readonly registry: ModelRegistry;
  private readonly models: ModelManager;
  private readonly log: (message: string) => void;
  private readonly threads: number;
  private readonly gpu: "auto" | false;

  constructor(config: ModelRegistryConfig, options: EngineOptions = {}) {
    this.registry = new ModelRegistry(config);
    this.log = options.log ?? (() => {});
    this.threads = options.threads ?? physicalCores();
    this.gpu = options.gpu ?? "auto";
    this.models = new ModelManager({
      runtime: () => this.runtime(),
      maxLoadedModels: () => this.registry.current.maxLoadedModels,
      currentEntry: (name) => this.registry.entries.find((e) => e.name === name),
      memoryBudget: () => this.registry.current.memoryBudget,
      defaultThreads: this.threads,
      cacheDir: options.cacheDir,
      log: this.log,
    });
  }

  /** Initialise llama.cpp (0.3-0.8 s); called early so the first request does not pay for it. */
  async start(): Promise<void> {
    await this.runtime();
  }

  /** Swap in an edited models.yaml: changed or removed models are unloaded once their requests end. */
  updateRegistry(config: ModelRegistryConfig): void {
    this.registry.replace(config);
    this.models.retireChanged(config.models);
  }

  listModels(): ModelInfo[] {
    return this.registry.entries.map((entry) => this.modelInfo(entry));
  }

  findModel(name: string): ModelInfo | undefined {
    const entry = this.registry.find(name);
    return entry && this.modelInfo(entry);
  }

  private modelInfo(entry: ModelEntry): ModelInfo {
    let sizeBytes: number | undefined;
    let modifiedAt = new Date(0).toISOString();
    try {
      const stat = statSync(entry.source);
      sizeBytes = stat.size;
      modifiedAt = stat.mtime.toISOString();
    } catch {
      // Not a file on disk (yet): synthetic or remote source.
    }
    return {
      name: entry.name,
      aliases: entry.aliases,
      source: entry.source,
      context: entry.context,
      parallel: entry.parallel,
      loaded: this.models.isLoaded(entry.name),
      sizeBytes,
      modifiedAt,
      details: { architecture: "llama" },
    };
  }

  chat(request: ChatRequest): Generation {
    return new StreamingGeneration((sink) => this.generate(request, sink, (loaded) => renderChat(loaded, request.messages)));
  }

  complete(request: CompletionRequest): Generation {
    return new StreamingGeneration((sink) =>
      this.generate(request, sink, (loaded) =>
        request.raw
          ? renderRaw(loaded, request.prompt)
          : renderChat(loaded, [
              ...(request.system ? [{ role: "system" as const, content: request.system }] : []),
              { role: "user" as const, content: request.prompt },
            ]),
      ),
    );
  }

  async embed(request: EmbedRequest): Promise<EmbedResult> {
    if (request.input.length === 0 || request.input.some((text) => text.length === 0))
      throw new LlamaportError("invalid_request", "input must be one or more non-empty strings", { param: "input" });
    return this.withModel(request.model, request.keepAlive, async (loaded) => {
      const context = await loaded.embeddingContext();
      const embeddings: number[][] = [];
      let promptTokens = 0;
      for (const [index, text] of request.input.entries()) {
        if (request.signal?.aborted) throw new LlamaportError("aborted", "request aborted");
        const tokens = loaded.model.tokenize(text).length;
        if (tokens > loaded.embeddingContextSize)
          throw new LlamaportError(
            "context_exceeded",
            `input[${index}] is ${tokens} tokens, the embedding context holds ${loaded.embeddingContextSize}`,
            { param: "input" },
          );
        promptTokens += tokens;
        const { vector } = await context.getEmbeddingFor(text);
        embeddings.push(Array.from(vector));
      }
      return { model: loaded.entry.name, embeddings, promptTokens };
    });
  }

  tokenize(model: string, text: string): Promise<number[]> {
    return this.withModel(model, undefined, async (loaded) => loaded.model.tokenize(text, false) as number[]);
  }

  detokenize(model: string, tokens: number[]): Promise<string> {
    return this.withModel(model, undefined, async (loaded) => loaded.model.detokenize(tokens as never));
  }

  async load(model: string, options: { keepAlive?: string | number } = {}): Promise<void> {
    await this.withModel(model, options.keepAlive, async () => {});
  }

  async unload(model: string): Promise<void> {
    await this.models.unload(this.registry.resolve(model).name);
  }

  loadedModels() {
    return this.models.loadedModels();
  }

  async dispose(): Promise<void> {
    await this.models.disposeAll();
  }

  private async runtime() {
    const [nlc, llama] = await Promise.all([
      importNodeLlamaCpp(),
      getLlamaRuntime({ maxThreads: Math.max(this.threads, ...this.registry.entries.map((e) => e.threads ?? 0)), gpu: this.gpu }),
    ]);
    return { nlc, llama };
  }

  private async withModel<T>(name: string, keepAlive: string | number | undefined, fn: (loaded: LoadedModel) => Promise<T>) {
    const entry = this.registry.resolve(name);
    const { loaded } = await this.models.use(entry, keepAlive);
    try {
      return await fn(loaded);
    } finally {
      this.models.release(loaded);
    }
  }

  private async generate(
    request: GenerateOptions,
    sink: GenerationSink,
    render: (loaded: LoadedModel) => RenderedPrompt,
  ): Promise<GenerationSummary> {
    const started = performance.now();
    const entry = this.registry.resolve(request.model);
    const sampling = resolveSampling(request, entry.defaults);
    const signal = request.signal ? AbortSignal.any([request.signal, sink.signal]) : sink.signal;
    const { loaded, loadMs } = await this.models.use(entry, request.keepAlive);
    try {
      const prompt = render(loaded);
      const limit = loaded.contextSize - Math.max(1, Math.floor(loaded.contextSize / 10));
      if (prompt.tokens.length > limit)
        throw new LlamaportError(
          "context_exceeded",
          `prompt too long for the context: ${prompt.tokens.length} tokens, the limit for model "${entry.name}" is ${limit} (context ${loaded.contextSize} per sequence, 10% kept for the reply)`,
          { param: "messages" },
        );
      const { nlc, llama } = await this.runtime();
      // Compiled before leasing a sequence, so a slow grammar build never holds one.
      const grammar = request.format === undefined ? undefined : await grammarFor(llama, request.format);
      const lease = await loaded.pool.acquire(prompt.tokens, signal);
      try {
        const result = await decode(nlc, loaded, lease, prompt, sampling, {
          ignoreEos: request.ignoreEos === true,
          grammar,
          signal,
          sink,
        }).catch((error: unknown) => {
          // node-llama-cpp throws the signal's reason when an abort lands before decoding starts.
          if (signal.aborted) throw new LlamaportError("aborted", "request aborted", { cause: error });
          throw error;
        });
        const summary: GenerationSummary = {
          type: "done",
          model: entry.name,
          finishReason: result.finishReason,
          stopSequence: result.stopSequence,
          promptTokens: prompt.tokens.length,
          cachedTokens: result.cachedTokens,
          completionTokens: result.completionTokens,
          timings: {
            queueMs: lease.queueMs,
            loadMs,
            promptMs: result.promptMs,
            generateMs: result.generateMs,
            totalMs: performance.now() - started,
          },
        };
        // One line per request (never per token): what was reused, how long it waited and why it ended.
        this.log(
          `${entry.name}: ${summary.promptTokens} prompt tokens (${summary.cachedTokens} cached), ${summary.completionTokens} generated, ` +
            `queue ${lease.queueMs.toFixed(0)} ms, load ${loadMs.toFixed(0)} ms, prompt ${result.promptMs.toFixed(0)} ms, ` +
            `generate ${result.generateMs.toFixed(0)} ms, ${summary.finishReason}`,
        );
        return summary;
      } finally {
        lease.release();
      }
    } finally {
      this.models.release(loaded);
    }
  }
}
