/**
 * The engine's neutral request and event types: what every protocol plugin maps its wire format to and from. No
 * protocol's field names appear here; a plugin maps these names to its own (see `PluginDefinition.fields`).
 * @module
 */

/** One chat turn. Protocols with richer content flatten it to text before reaching the engine. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A JSON Schema object, as clients send it. */
export type JsonSchema = Record<string, unknown>;

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
  /** Keep generating past end-of-sequence tokens (benchmarks). */
  ignoreEos?: boolean;
  /** Constrain the output: `"json"` = any JSON value, or a JSON Schema the output must match. */
  format?: "json" | JsonSchema;
  /** How long the model stays loaded once idle after this request, in ms: 0 = unload at once, negative = never. */
  keepAliveMs?: number;
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

/**
 * The first event of every generation: a sequence is leased and the prompt is tokenized, so problems that come before
 * any output (unknown model, prompt too long, queue full) have already been thrown.
 */
export interface GenerationStart {
  type: "start";
  promptTokens: number;
  /** Prompt tokens the leased sequence already holds, which will not be evaluated again. */
  cachedTokens: number;
}

/** A piece of generated text. Pieces arrive in order; concatenated they are the whole output. */
export interface TextDelta {
  type: "text";
  text: string;
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

export type GenerationEvent = GenerationStart | TextDelta | GenerationSummary;

/**
 * A running generation: iterate it for events (`start`, then `text`s, then `done`), or await `collect()` for the
 * whole text. Nothing runs until it is first read; read it at most once.
 */
export interface Generation extends AsyncIterable<GenerationEvent> {
  /** The registry name of the model serving it (aliases resolved), known before the first event. */
  readonly model: string;
  collect(): Promise<{ text: string; summary: GenerationSummary }>;
}

/** What the GGUF header says about a model, read without loading it. */
export interface ModelFacts {
  /** `general.architecture`, e.g. "llama", "qwen2", "bert". */
  architecture: string;
  /** Sum of all tensors' element counts. */
  parameterCount: number;
  /** The weights' quantization, e.g. "Q4_K_M", "Q8_0", "F16" (from `general.file_type`, else the most common tensor type). */
  quantization: string;
  /** The context length the model was trained with. */
  trainedContext?: number;
  /** Width of the model's embeddings. */
  embeddingLength?: number;
  /** The Jinja chat template stored in the file, if any. */
  chatTemplate?: string;
  /** The model produces pooled sentence embeddings (an embedding model rather than a chat model). */
  embeddingModel: boolean;
  /** The vocabulary has fill-in-the-middle tokens (prefix, suffix, middle). */
  infill: boolean;
  /** `general.*` and the architecture's own keys (`<architecture>.*`), as plain values; token lists are left out. */
  metadata: Record<string, unknown>;
}

/** What a protocol can show about a model without loading it. */
export interface ModelInfo {
  name: string;
  aliases: string[];
  /** Tokens per sequence. */
  context: number;
  parallel: number;
  loaded: boolean;
  /** Size of the GGUF file in bytes, when it is on disk. */
  sizeBytes?: number;
  /** Last modification of the GGUF file (or of the registry), ISO 8601. */
  modifiedAt: string;
  /** From the GGUF header, when the file is on disk (not yet for a model that still has to be downloaded). */
  facts?: ModelFacts;
}

/** A model in memory and what it is doing now. */
export interface LoadedModelStatus {
  name: string;
  /** When it will be unloaded (ISO 8601); undefined while in use or when it never expires. */
  expiresAt?: string;
  sizeBytes: number;
  /** Sequences generating right now. */
  activeSequences: number;
  /** Requests waiting for a free sequence. */
  queuedRequests: number;
}

export interface EmbedRequest {
  model: string;
  input: string[];
  signal?: AbortSignal;
  /** As in `GenerateOptions.keepAliveMs`. */
  keepAliveMs?: number;
}

export interface EmbedResult {
  model: string;
  embeddings: number[][];
  promptTokens: number;
}

/** The engine as protocol plugins see it. Everything returns neutral types; no plugin touches node-llama-cpp. */
export interface EngineFacade {
  /** Every model in the registry, with its GGUF facts when the file is on disk. */
  listModels(): Promise<ModelInfo[]>;
  /** The model a name or alias points to, or undefined. */
  findModel(name: string): Promise<ModelInfo | undefined>;
  chat(request: ChatRequest): Generation;
  complete(request: CompletionRequest): Generation;
  embed(request: EmbedRequest): Promise<EmbedResult>;
  tokenize(model: string, text: string): Promise<number[]>;
  detokenize(model: string, tokens: number[]): Promise<string>;
  /** Load a model now; resolves when it is ready. */
  load(model: string, options?: { keepAliveMs?: number }): Promise<void>;
  /** Unload a model once its running requests end. */
  unload(model: string): Promise<void>;
  /** Models loaded right now, with their sequences' activity. */
  loadedModels(): LoadedModelStatus[];
}
