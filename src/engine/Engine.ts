/** The engine: one object that serves every protocol's chat, completion, embedding and token calls over the model registry. */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { ChatHistoryItem, Llama, LlamaContextSequence, Token } from "node-llama-cpp";
import type { ModelEntry, ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { toChatHistory } from "./chatHistory.ts";
import { cachedPromptTokens, type DecodeRequest, type DecodeResult, decode } from "./decode.ts";
import { decodeWithTools } from "./decodeWithTools.ts";
import { LlamaportError } from "./EngineError.ts";
import { FileDigests } from "./FileDigests.ts";
import { grammarFor } from "./grammarFor.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import { ModelManager } from "./ModelManager.ts";
import { ModelRegistry } from "./ModelRegistry.ts";
import { getLlamaRuntime, importNodeLlamaCpp, type NodeLlamaCppModule, nodeLlamaCppSpecifier } from "./nodeLlamaCpp.ts";
import { OffThreadTokenizer } from "./OffThreadTokenizer.ts";
import { physicalCores } from "./physicalCores.ts";
import { readModelFacts } from "./readModelFacts.ts";
import {
  beginningToken,
  checkPromptChars,
  type PromptBudget,
  promptTokenLimit,
  type RenderedPrompt,
  renderChat,
  renderChatText,
  renderCompletion,
  renderToolChat,
} from "./renderPrompt.ts";
import { pullModel } from "./pullModel.ts";
import { localModelPath, resolveModelSource, type SourceOptions } from "./resolveModelSource.ts";
import { resolveSampling } from "./sampling.ts";
import { ThreadBudget } from "./ThreadBudget.ts";
import { tokenBiasFor } from "./tokenBias.ts";
import { type GenerationSink, StreamingGeneration, type ToolCallSink } from "./StreamingGeneration.ts";
import { checkToolGrammars, planTools, type ToolPlan } from "./tools/toolPlan.ts";
import type {
  ChatMessage,
  ChatPrompt,
  ChatPromptRequest,
  ChatRequest,
  CompletionRequest,
  EmbedRequest,
  EmbedResult,
  EngineFacade,
  GeneratedToken,
  GenerateOptions,
  Generation,
  GenerationSummary,
  LoadedModelStatus,
  ModelCapability,
  ModelInfo,
  TokenizeOptions,
  PullRequest,
  PullResult,
} from "./types.ts";

/** One generation on a leased sequence: plain decoding (decode.ts) or chat with tools (decodeWithTools.ts). */
type Decoder = (
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  sequence: LlamaContextSequence,
  request: DecodeRequest & { sink: GenerationSink & ToolCallSink },
) => Promise<DecodeResult>;

export interface EngineOptions {
  /** Threads for models that do not set their own; default: the physical cores. */
  threads?: number;
  gpu?: "auto" | false;
  /** Where generated and downloaded models are kept. */
  cacheDir: string;
  /** Base URL for `hf:` sources (default: the public hub). */
  hfEndpoint?: string;
  /** Hugging Face token for gated and private models (sent to the hub only). */
  hfToken?: string;
  /** The models.yaml that `pull` adds models to; none: pulled models last until the process ends. */
  modelsFile?: string;
  /** The text `pull` starts a models.yaml from when `modelsFile` does not exist yet (default: empty). */
  newModelsFileText?: string;
  /** A download that gets no further for this long is stopped (default 60 s). */
  downloadStallTimeoutMs?: number;
  /**
   * Where `pull` may fetch a model that is not in the registry: `anywhere` (default; any http(s) URL), or `hub` (`hf:`
   * sources and URLs on `hfEndpoint` only), for a server whose clients must not make it fetch from arbitrary hosts.
   */
  pullFrom?: "anywhere" | "hub";
  log?: (message: string) => void;
  /**
   * Called when a generation starts running, in its caller's async context (the host finds the request it belongs
   * to); the function it returns is called once when it ends: with its summary, or undefined when it failed. Never per
   * token. Default: one log line per generation (`describeGeneration`).
   */
  onGenerationStart?(): ((summary: GenerationSummary | undefined) => void) | undefined;
  /** Called once per embedding request served. */
  onEmbedding?(result: { model: string; promptTokens: number; ms: number }): void;
  /** Loading a model's weights: the fraction done (0 to 1), as often as node-llama-cpp reports it. */
  onLoadProgress?(model: string, fraction: number): void;
}

export class Engine implements EngineFacade {
  readonly registry: ModelRegistry;
  private readonly models: ModelManager;
  private readonly log: (message: string) => void;
  private readonly observe: Pick<EngineOptions, "onGenerationStart" | "onEmbedding">;
  private readonly threads: number;
  private readonly gpu: "auto" | false;
  private readonly sourceOptions: SourceOptions;
  private readonly modelsFile?: { path: string; newText?: string };
  private readonly pullFrom: "anywhere" | "hub";
  private readonly digests: FileDigests;
  private readonly tokenizer = new OffThreadTokenizer(nodeLlamaCppSpecifier);
  /** Shutting down: no new work; queued requests were answered. */
  private closing = false;
  /** Aborted at the end of a graceful shutdown: generations still running stop and end with an error. */
  private readonly shutdown = new AbortController();
  /** Limits decode threads to the cores other programs leave free (models without a fixed `threads`). */
  readonly threadBudget = new ThreadBudget();

  constructor(config: ModelRegistryConfig, options: EngineOptions) {
    this.registry = new ModelRegistry(config);
    this.log = options.log ?? (() => {});
    this.observe = {
      onGenerationStart:
        options.onGenerationStart ??
        (() => (summary) => {
          if (summary) this.log(describeGeneration(summary));
        }),
      onEmbedding: options.onEmbedding,
    };
    this.threads = options.threads ?? physicalCores();
    this.gpu = options.gpu ?? "auto";
    this.digests = new FileDigests({
      store: join(options.cacheDir, "digests.json"),
      onComputed: (path, bytes, ms) => this.log(`computed the sha256 of ${path} (${bytes} bytes) in ${ms.toFixed(0)} ms`),
    });
    this.sourceOptions = {
      cacheDir: options.cacheDir,
      hfEndpoint: options.hfEndpoint,
      hfToken: options.hfToken,
      stallTimeoutMs: options.downloadStallTimeoutMs,
      // A download's SHA-256 is checked with the digests /api/tags lists, so it is computed once.
      sha256Of: (path) => this.digests.digest(path),
      log: this.log,
    };
    this.pullFrom = options.pullFrom ?? "anywhere";
    this.modelsFile = options.modelsFile ? { path: options.modelsFile, newText: options.newModelsFileText } : undefined;
    this.models = new ModelManager({
      runtime: () => this.runtime(),
      maxLoadedModels: () => this.registry.current.maxLoadedModels,
      currentEntry: (name) => this.registry.entries.find((e) => e.name === name),
      memoryBudget: () => this.registry.current.memoryBudget,
      defaultThreads: this.threads,
      threadBudget: this.threadBudget,
      source: this.sourceOptions,
      onUnload: (modelPath) => this.tokenizer.release(modelPath),
      onLoadProgress: options.onLoadProgress,
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

  listModels(): Promise<ModelInfo[]> {
    return Promise.all(this.registry.entries.map((entry) => this.modelInfo(entry)));
  }

  async findModel(name: string): Promise<ModelInfo | undefined> {
    const entry = this.registry.find(name);
    return entry && this.modelInfo(entry);
  }

  async digest(name: string): Promise<string | undefined> {
    const path = localModelPath(this.registry.resolve(name), this.sourceOptions);
    if (!path || !(await stat(path).catch(() => undefined))?.isFile()) return undefined;
    return this.digests.digest(path);
  }

  defaultModel(): string | undefined {
    return this.registry.current.defaultModel;
  }

  /** Messages and tools are checked at once (a bad tool schema throws here); the rest happens on first read. */
  chat(request: ChatRequest): Generation {
    const history = toChatHistory(request.messages);
    const tools = planTools(request);
    const chars = contentChars(request.messages);
    if (!tools) return this.generation(request, "messages", (loaded, budget) => renderChat(loaded, history, budget, chars));
    return this.generation(
      request,
      "messages",
      async (loaded, budget) => renderToolChat(loaded, history, tools.functions, budget, chars),
      toolDecoder(history, tools),
      (llama) => checkToolGrammars(llama, tools),
    );
  }

  complete(request: CompletionRequest): Generation {
    return this.generation(request, "prompt", (loaded, budget) => renderCompletion(loaded, request, budget));
  }

  chatChoices(request: ChatRequest, count: number): Generation[] {
    return this.choices(request, count, (one) => this.chat(one));
  }

  completeChoices(request: CompletionRequest, count: number): Generation[] {
    return this.choices(request, count, (one) => this.complete(one));
  }

  async embed(request: EmbedRequest): Promise<EmbedResult> {
    if (request.input.length === 0 || request.input.some((input) => input.length === 0))
      throw new LlamaportError("invalid_request", "input must be one or more non-empty texts or token lists", { param: "input" });
    if (request.input.length > maxEmbedInputs)
      throw new LlamaportError(
        "invalid_request",
        `input must be at most ${maxEmbedInputs} texts or token lists, got ${request.input.length}`,
        {
          param: "input",
        },
      );
    const started = performance.now();
    return this.withModel(request.model, request.keepAliveMs, async (loaded) => {
      const size = loaded.model.embeddingVectorSize;
      if (request.dimensions !== undefined && request.dimensions !== size)
        throw new LlamaportError(
          "invalid_request",
          `dimensions must be ${size} for model "${loaded.entry.name}": it makes ${size}-dimensional embeddings and cannot shorten them`,
          { param: "dimensions" },
        );
      const context = await loaded.embeddingContext();
      const embeddings: number[][] = [];
      let promptTokens = 0;
      for (const [index, input] of request.input.entries()) {
        if (request.signal?.aborted) throw new LlamaportError("aborted", "request aborted");
        let tokens =
          typeof input === "string"
            ? await this.tokenizer.text(loaded, fitted(loaded, input, index, request.truncate), false)
            : checkedTokens(loaded, input, `input[${index}]`, "input");
        // node-llama-cpp adds the model's beginning and end tokens, and needs one more place: what is left for the input.
        const usable = loaded.embeddingContextSize - 1 - (context.calculateInputLength(tokens.slice()) - tokens.length);
        if (tokens.length > usable && request.truncate) tokens = tokens.slice(0, usable);
        if (tokens.length > usable)
          throw new LlamaportError(
            "context_exceeded",
            `input[${index}] is ${tokens.length} tokens, the embedding context holds ${usable}`,
            { param: "input", tokens: { prompt: tokens.length, context: usable } },
          );
        promptTokens += tokens.length;
        const { vector } = await context.getEmbeddingFor(tokens);
        embeddings.push(request.normalize === false ? vector.map(Math.fround) : unitLength(vector));
      }
      this.observe.onEmbedding?.({ model: loaded.entry.name, promptTokens, ms: performance.now() - started });
      return { model: loaded.entry.name, embeddings, promptTokens };
    });
  }

  tokenize(model: string, text: string, options: TokenizeOptions = {}): Promise<number[]> {
    return this.withModel(model, undefined, async (loaded) => {
      // What cannot fit the context is no prompt for this model: refused before the (slow) counting.
      checkPromptChars(loaded, text.length, loaded.contextSize, "text", "text");
      const tokens: number[] = await this.tokenizer.text(loaded, text, options.specialTokens === true);
      const bos = options.bos ? beginningToken(loaded) : undefined;
      return bos === undefined ? tokens : [bos, ...tokens];
    });
  }

  detokenize(model: string, tokens: number[]): Promise<string> {
    return this.withModel(model, undefined, async (loaded) => loaded.model.detokenize(tokens as never));
  }

  tokenPieces(model: string, tokens: number[]): Promise<GeneratedToken[]> {
    return this.withModel(model, undefined, async (loaded) => {
      // Special tokens have no text of their own in generated output; here they are written out, as token-to-piece
      // does: once per id and call, so a list of 100,000 BOS tokens makes one native call, not 100,000.
      const written = new Map<Token, GeneratedToken>();
      return checkedTokens(loaded, tokens, "tokens").map((token) => {
        const { text, bytes } = loaded.pieces.get(token);
        if (text !== "") return { id: token, text, bytes };
        let piece = written.get(token);
        if (!piece) {
          const special = loaded.model.isSpecialToken(token) ? loaded.model.detokenize([token], true) : "";
          piece = { id: token, text: special, bytes: special ? Array.from(new TextEncoder().encode(special)) : bytes };
          written.set(token, piece);
        }
        return piece;
      });
    });
  }

  chatPrompt(request: ChatPromptRequest): Promise<ChatPrompt> {
    const history = toChatHistory(request.messages);
    // As chat() renders it: with the tools documented when it would generate with them.
    const functions = planTools(request)?.functions;
    const chars = contentChars(request.messages);
    return this.withModel(request.model, undefined, (loaded) =>
      // Counted as tokenize() counts: what cannot fit the model's context is refused before the counting.
      renderChatText(loaded, history, functions, { tokenizer: this.tokenizer, limit: loaded.contextSize }, chars),
    );
  }

  async load(model: string, options: { keepAliveMs?: number; contextSize?: number } = {}): Promise<void> {
    const entry = this.registry.resolve(model);
    await this.checkContextSize(entry, options.contextSize);
    const use = await this.models.use(entry, options.keepAliveMs, options.contextSize);
    use.release();
  }

  async unload(model: string): Promise<void> {
    this.models.unload(this.registry.resolve(model).name);
  }

  loadedModels(): LoadedModelStatus[] {
    return this.models.loadedModels();
  }

  pull(request: PullRequest): Promise<PullResult> {
    if (this.closing) return Promise.reject(shuttingDown());
    // A download still running when the shutdown's grace period ends stops (resumable) and ends with an error, as
    // generations do; otherwise it would hold its request open until the server closed the connection under it.
    const signal = request.signal ? AbortSignal.any([request.signal, this.shutdown.signal]) : this.shutdown.signal;
    const pulled = pullModel(
      { ...request, signal },
      {
        registry: this.registry,
        source: this.sourceOptions,
        modelsFile: this.modelsFile,
        pullFrom: this.pullFrom,
        apply: (config) => this.updateRegistry(config),
      },
    );
    return pulled.catch((error: unknown) => {
      throw this.shutdown.signal.aborted && !request.signal?.aborted ? shuttingDown() : error;
    });
  }

  /** Shutting down: refuse new work and answer every queued request with 503; running generations go on. */
  beginShutdown(): void {
    this.closing = true;
    this.models.rejectQueued(shuttingDown());
  }

  /** End of the shutdown grace period: generations still running stop now and end with a 503 error. */
  abortGenerations(): void {
    this.shutdown.abort();
  }

  async dispose(): Promise<void> {
    this.closing = true;
    this.tokenizer.dispose();
    await this.models.disposeAll();
  }

  private async modelInfo(entry: ModelEntry): Promise<ModelInfo> {
    const info: ModelInfo = {
      name: entry.name,
      aliases: entry.aliases,
      context: entry.context,
      parallel: entry.parallel,
      loaded: this.models.isLoaded(entry.name),
      modifiedAt: new Date(0).toISOString(),
      defaults: { ...entry.defaults },
      ...(entry.chatTemplate.kind === "jinja" && { chatTemplate: entry.chatTemplate.template }),
      capabilities: [],
      source: entry.source,
    };
    const path = localModelPath(entry, this.sourceOptions);
    const file = path === undefined ? undefined : await stat(path).catch(() => undefined);
    if (!path || !file?.isFile()) return info; // not written or downloaded yet
    info.file = path;
    info.sizeBytes = file.size;
    info.modifiedAt = file.mtime.toISOString();
    info.facts = await readModelFacts(path).catch((error: unknown) => {
      this.log(`cannot read the GGUF header of ${entry.name}: ${(error as Error).message}`);
      return undefined;
    });
    const usesGgufTemplate =
      entry.chatTemplate.kind === "auto" || (entry.chatTemplate.kind === "wrapper" && entry.chatTemplate.name === "jinjaTemplate");
    if (usesGgufTemplate && info.facts?.chatTemplate) info.chatTemplate = info.facts.chatTemplate;
    info.capabilities = capabilitiesOf(info);
    return info;
  }

  /**
   * A request's own context size: a whole number, and no larger than the model was trained with unless models.yaml
   * already gives the model that much (then the administrator chose it).
   */
  private async checkContextSize(entry: ModelEntry, contextSize: number | undefined): Promise<void> {
    if (contextSize === undefined) return;
    if (!Number.isInteger(contextSize) || contextSize < 1)
      throw new LlamaportError("invalid_request", `contextSize must be a whole number of tokens >= 1, got ${contextSize}`, {
        param: "contextSize",
      });
    if (contextSize <= entry.context) return;
    const { trainedContext } = await readModelFacts(await resolveModelSource(entry, this.sourceOptions));
    if (trainedContext !== undefined && contextSize > trainedContext)
      throw new LlamaportError(
        "invalid_request",
        `contextSize ${contextSize} is more than model "${entry.name}" was trained with (${trainedContext} tokens)`,
        { param: "contextSize" },
      );
  }

  private async runtime() {
    const [nlc, llama] = await Promise.all([
      importNodeLlamaCpp(),
      getLlamaRuntime({ maxThreads: Math.max(this.threads, ...this.registry.entries.map((e) => e.threads ?? 0)), gpu: this.gpu }),
    ]);
    return { nlc, llama };
  }

  private async withModel<T>(name: string, keepAliveMs: number | undefined, fn: (loaded: LoadedModel) => Promise<T>) {
    const entry = this.registry.resolve(name);
    if (this.closing) throw shuttingDown();
    const use = await this.models.use(entry, keepAliveMs);
    try {
      return await fn(use.loaded);
    } finally {
      use.release();
    }
  }

  /**
   * `count` generations of one request, each on its own sequence, so at most the model's `parallel`. With a seed, each
   * gets its own (seed, seed + 1, ...): the same seed would give the same answer every time.
   */
  private choices<R extends GenerateOptions>(request: R, count: number, one: (request: R) => Generation): Generation[] {
    const entry = this.registry.resolve(request.model);
    if (!Number.isInteger(count) || count < 1 || count > entry.parallel)
      throw new LlamaportError(
        "invalid_request",
        `choices must be between 1 and ${entry.parallel} for model "${entry.name}" (the sequences it decodes in parallel, \`parallel\` in models.yaml), got ${count}`,
        { param: "choices" },
      );
    const seed = request.seed ?? entry.defaults.seed;
    return Array.from({ length: count }, (_, index) => one(seed === undefined ? request : { ...request, seed: seed + index }));
  }

  /**
   * A lazy generation: the model name is resolved now (an unknown one throws at once), everything else on first read.
   * `prepare` runs before a sequence is leased (compiling grammars), so a slow or failing one never holds a sequence.
   */
  private generation(
    request: GenerateOptions,
    promptParam: string,
    render: Render,
    decoder: Decoder = decode,
    prepare?: (llama: Llama) => Promise<void>,
  ): Generation {
    const entry = this.registry.resolve(request.model);
    return new StreamingGeneration(entry.name, async (sink) => {
      const ended = this.observe.onGenerationStart?.();
      let summary: GenerationSummary | undefined;
      try {
        summary = await this.generate(entry, request, sink, promptParam, render, decoder, prepare);
        return summary;
      } finally {
        ended?.(summary);
      }
    });
  }

  private async generate(
    entry: ModelEntry,
    request: GenerateOptions,
    sink: GenerationSink & ToolCallSink,
    promptParam: string,
    render: Render,
    decoder: Decoder,
    prepare?: (llama: Llama) => Promise<void>,
  ): Promise<GenerationSummary> {
    const started = performance.now();
    const sampling = resolveSampling(request, entry.defaults);
    if (this.closing) throw shuttingDown();
    await this.checkContextSize(entry, request.contextSize);
    const use = await this.models.use(entry, request.keepAliveMs, request.contextSize);
    try {
      const { loaded } = use;
      const signals = [sink.signal, this.shutdown.signal, loaded.fileChanged];
      const signal = AbortSignal.any(request.signal ? [request.signal, ...signals] : signals);
      // Why decoding stopped, when it was not the client: the reply ends with an error instead of a finish reason.
      const interruption = () =>
        this.shutdown.signal.aborted
          ? new LlamaportError("unavailable", "the server is shutting down; the reply was cut short", { retryAfter: 5 })
          : loaded.fileChanged.aborted
            ? new LlamaportError("unavailable", `model "${entry.name}" changed on disk while in use; try again`, { retryAfter: 1 })
            : undefined;
      const window = loaded.windowFor(request.contextSize);
      const budget = { tokenizer: this.tokenizer, limit: promptTokenLimit(window) };
      const prompt = checkedPrompt(loaded, await render(loaded, budget), window, promptParam);
      const { nlc, llama } = await this.runtime();
      // Compiled before leasing a sequence, so a slow grammar build never holds one.
      const grammar = await grammarFor(llama, request);
      await prepare?.(llama);
      const tokenBias = tokenBiasFor(nlc, loaded, sampling);
      const lease = await loaded.pool
        .acquire(sampling.reusePrompt ? prompt.tokens : undefined, signal, request.sequence)
        .catch((error: unknown) => {
          throw interruption() ?? error;
        });
      try {
        const cachedTokens = sampling.reusePrompt ? cachedPromptTokens(lease.sequence, prompt) : 0;
        const result = await decoder(nlc, loaded, lease.sequence, {
          prompt,
          sampling,
          grammar,
          tokenBias,
          cachedTokens,
          window,
          signal,
          sink,
        }).catch((error: unknown) => {
          throw interruption() ?? error;
        });
        // Stopped by a shutdown or a file change rather than the client: the reply ends with an error, not "stop".
        const interrupted = result.finishReason === "abort" ? interruption() : undefined;
        if (interrupted) throw interrupted;
        const summary: GenerationSummary = {
          type: "done",
          model: entry.name,
          finishReason: result.finishReason,
          stopSequence: result.stopSequence,
          promptTokens: prompt.tokens.length,
          cachedTokens,
          completionTokens: result.completionTokens,
          sequence: lease.index,
          timings: {
            queueMs: lease.queueMs,
            loadMs: use.loadMs,
            promptMs: result.promptMs,
            generateMs: result.generateMs,
            totalMs: performance.now() - started,
          },
          ...(result.context && { context: result.context as number[] }),
          ...(result.speculation && { speculation: result.speculation }),
          ...(result.unfinishedToolCall && { unfinishedToolCall: result.unfinishedToolCall }),
        };
        return summary;
      } finally {
        lease.release();
      }
    } finally {
      use.release();
    }
  }
}

/** What a model on disk can do, from its header and template (Ollama's rules: a template mentioning tools takes them). */
function capabilitiesOf(model: ModelInfo): ModelCapability[] {
  if (!model.facts) return [];
  const found: ModelCapability[] = [model.facts.embeddingModel ? "embedding" : "completion"];
  const chatTemplate = model.chatTemplate ?? "";
  if (chatTemplate.includes("tools") || chatTemplate.includes("tool_call")) found.push("tools");
  if (model.facts.infill) found.push("insert");
  return found;
}

/** Token ids from a request (`what` names them in the message, `param` is the field), checked against the vocabulary. */
function checkedTokens(loaded: LoadedModel, tokens: number[], what: string, param = what): Token[] {
  const size = loaded.vocabularySize;
  for (const token of tokens)
    if (!Number.isInteger(token) || token < 0 || token >= size)
      throw new LlamaportError("invalid_request", `${what} has token id ${token}, the vocabulary has ids 0 to ${size - 1}`, { param });
  return tokens as Token[];
}

/**
 * The vector scaled to length 1 (Euclidean), as OpenAI, Ollama and llama-server return embeddings, in float32 precision
 * (llama.cpp's), so a float list and a base64 float32 buffer carry the same numbers.
 */
function unitLength(vector: readonly number[]): number[] {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  return vector.map((value) => Math.fround(value * scale));
}

/**
 * Decoding for a chat with tools: LlamaChat on the leased sequence, within the room the context has left. LlamaChat
 * reuses the prefix the sequence holds by itself; anything past `cachedTokens` (all of it, without prompt reuse) is
 * erased first, as the plain decode loop does.
 */
function toolDecoder(history: ChatHistoryItem[], plan: ToolPlan): Decoder {
  return async (nlc, loaded, sequence, { prompt, sampling, tokenBias, cachedTokens, window, signal, sink }) => {
    if (signal.aborted) throw new LlamaportError("aborted", "request aborted before decoding started");
    if (cachedTokens < sequence.nextTokenIndex)
      await sequence.eraseContextTokenRanges([{ start: cachedTokens, end: sequence.nextTokenIndex }]);
    sink.start({ promptTokens: prompt.tokens.length, cachedTokens });
    return decodeWithTools(nlc, {
      sequence,
      chatWrapper: loaded.chatWrapper,
      history,
      plan,
      sampling,
      // Past the context LlamaChat would shift it by dropping history: stop at its end instead ("length").
      maxTokens: Math.min(sampling.maxTokens ?? Number.POSITIVE_INFINITY, window - prompt.tokens.length),
      window,
      tokenBias,
      signal,
      sink,
    }).catch((error: unknown) => {
      // LlamaChat throws the signal's reason when an abort lands before any text (during a forced call, say).
      if (signal.aborted) throw new LlamaportError("aborted", "request aborted", { cause: error });
      throw error;
    });
  };
}

/** The length of a chat's message texts, which decides whether its prompt can fit at all and where it is tokenized. */
function contentChars(messages: readonly ChatMessage[]): number {
  let chars = 0;
  for (const message of messages) chars += message.content.length;
  return chars;
}

/** Renders a request's prompt on a loaded model, within a budget of tokens. */
type Render = (loaded: LoadedModel, budget: PromptBudget) => Promise<RenderedPrompt>;

/** Inputs one embedding request may have: OpenAI's limit. Each is embedded in turn, so more only make it slower. */
export const maxEmbedInputs = 2048;

/** The prompt, if it leaves room for a reply in the request's window: 10% of it is kept for the answer. */
function checkedPrompt(loaded: LoadedModel, prompt: RenderedPrompt, window: number, param: string): RenderedPrompt {
  const limit = promptTokenLimit(window);
  if (prompt.tokens.length > limit)
    throw new LlamaportError(
      "context_exceeded",
      `prompt too long for the context: ${prompt.tokens.length} tokens, the limit for model "${loaded.entry.name}" is ${limit} (context ${window} per sequence, 10% kept for the reply)`,
      { param, tokens: { prompt: prompt.tokens.length, context: window } },
    );
  return prompt;
}

function shuttingDown(): LlamaportError {
  return new LlamaportError("unavailable", "the server is shutting down; try again once it is back", { retryAfter: 5 });
}

/**
 * An embedding text as it will be tokenized: one too long to fit is refused before it is tokenized; one to be cut to
 * fit anyway is cut first to what its first tokens can cover (with a margin, so the tokens kept are the same), so a
 * megabyte of text is not tokenized to keep two thousand tokens of it.
 */
function fitted(loaded: LoadedModel, input: string, index: number, truncate: boolean | undefined): string {
  const limit = loaded.embeddingContextSize;
  if (!truncate) {
    if (input.length > limit * loaded.maxTokenChars)
      throw new LlamaportError(
        "context_exceeded",
        `input[${index}] is ${input.length} characters, more than the embedding context holds (${limit} tokens of at most ${loaded.maxTokenChars} characters)`,
        { param: "input" },
      );
    return input;
  }
  const covered = (limit + 64) * loaded.maxTokenChars;
  return input.length > covered ? input.slice(0, covered) : input;
}

/** One line per generation (never per token): what was reused, how long it waited and why it ended. */
export function describeGeneration(summary: GenerationSummary): string {
  const t = summary.timings;
  return (
    `${summary.model}: ${summary.promptTokens} prompt tokens (${summary.cachedTokens} cached), ${summary.completionTokens} generated, ` +
    `queue ${t.queueMs.toFixed(0)} ms, load ${t.loadMs.toFixed(0)} ms, prompt ${t.promptMs.toFixed(0)} ms, ` +
    `generate ${t.generateMs.toFixed(0)} ms, ${summary.finishReason}` +
    (summary.speculation ? `, speculative ${summary.speculation.accepted}/${summary.speculation.predicted} predicted tokens accepted` : "")
  );
}
