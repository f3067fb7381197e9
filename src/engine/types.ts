/** The engine's neutral request and event types: what every protocol plugin maps its wire format to and from. */

/** One chat turn. Protocols with richer content (images, tool calls) flatten to text before reaching the engine. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Sampling and control options shared by chat and completion calls. Unset fields fall back to the model's defaults. */
export interface GenerateOptions {
  /** Registry name or alias of the model. */
  model: string;
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  /** Generation stops before any of these strings; the string itself is not returned. */
  stop?: string[];
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Keep generating past end-of-sequence tokens (benchmarks; llama-server's `ignore_eos`). */
  ignoreEos?: boolean;
  /** Constrain the output: `"json"` = any JSON value, or a JSON Schema object the output must match. */
  format?: "json" | Record<string, unknown>;
  /** How long the model stays loaded after this request: Ollama duration ("5m", seconds as a number, negative = forever). */
  keepAlive?: string | number;
  /** Aborting stops decoding at once and frees the sequence (or the queue place). */
  signal?: AbortSignal;
}

export interface ChatRequest extends GenerateOptions {
  messages: ChatMessage[];
}

export interface CompletionRequest extends GenerateOptions {
  prompt: string;
  /** System prompt; only used when the prompt is templated. */
  system?: string;
  /** Send the prompt to the model as is, without the chat template. */
  raw?: boolean;
}

/** Why generation ended: the model stopped (end of sequence or a stop string), hit max tokens, or the client went away. */
export type FinishReason = "stop" | "length" | "abort";

/** Durations of one request, in milliseconds. */
export interface GenerationTimings {
  /** Waiting for a free sequence. */
  queueMs: number;
  /** Loading the model (0 when it was already loaded). */
  loadMs: number;
  /** Evaluating the prompt, up to the first generated token. */
  promptMs: number;
  /** Generating the output after the first token. */
  generateMs: number;
  /** The whole request inside the engine. */
  totalMs: number;
}

/** The final event of every generation. */
export interface GenerationSummary {
  type: "done";
  /** The registry name of the model that served the request (aliases resolved). */
  model: string;
  finishReason: FinishReason;
  /** The stop string that ended generation, when one did. */
  stopSequence?: string;
  promptTokens: number;
  /** Prompt tokens served from a sequence's cache instead of being evaluated again. */
  cachedTokens: number;
  completionTokens: number;
  timings: GenerationTimings;
}

/** A piece of generated text. Pieces arrive in order; concatenated they are the whole output. */
export interface TextDelta {
  type: "text";
  text: string;
}

export type GenerationEvent = TextDelta | GenerationSummary;

/** A running generation: iterate it for events, or await `collect()` for the whole text. Iterate at most once. */
export interface Generation extends AsyncIterable<GenerationEvent> {
  collect(): Promise<{ text: string; summary: GenerationSummary }>;
}

/** What a protocol can show about a model without loading it. */
export interface ModelInfo {
  name: string;
  aliases: string[];
  /** Where the weights come from: a file path, `synthetic:<preset>` or a URL. */
  source: string;
  /** Tokens per sequence. */
  context: number;
  parallel: number;
  loaded: boolean;
  /** Size of the GGUF file in bytes, when it is on disk. */
  sizeBytes?: number;
  /** Last modification of the GGUF file (or of the registry entry), ISO 8601. */
  modifiedAt: string;
  /** From the GGUF header when it is on disk: architecture, quantization, parameter count. */
  details?: { architecture?: string; quantization?: string; parameters?: number };
}

export interface EmbedRequest {
  model: string;
  input: string[];
  signal?: AbortSignal;
  keepAlive?: string | number;
}

export interface EmbedResult {
  model: string;
  embeddings: number[][];
  promptTokens: number;
}

/** The engine as protocol plugins see it. Everything returns neutral types; no plugin touches node-llama-cpp. */
export interface EngineFacade {
  /** Every model in the registry, aliases included in each entry. */
  listModels(): ModelInfo[];
  /** The model a name or alias points to, or undefined. */
  findModel(name: string): ModelInfo | undefined;
  chat(request: ChatRequest): Generation;
  complete(request: CompletionRequest): Generation;
  embed(request: EmbedRequest): Promise<EmbedResult>;
  tokenize(model: string, text: string): Promise<number[]>;
  detokenize(model: string, tokens: number[]): Promise<string>;
  /** Load a model now (Ollama's empty prompt); resolves when it is ready. */
  load(model: string, options?: { keepAlive?: string | number }): Promise<void>;
  /** Unload a model once its running requests end. */
  unload(model: string): Promise<void>;
  /** Models loaded right now, with when they will be unloaded (ISO 8601, undefined = never). */
  loadedModels(): { name: string; expiresAt?: string; sizeBytes?: number }[];
}
