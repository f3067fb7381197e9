/**
 * The engine's neutral request and event types: what every protocol plugin maps its wire format to and from. No
 * protocol's field names appear here; a plugin maps these names to its own (see `PluginDefinition.fields`).
 * @module
 */

import type { ToolCall, ToolCallEvent, ToolChoice, ToolDefinition, UnfinishedToolCall } from "./toolTypes.ts";

export type * from "./toolTypes.ts";

/** One chat turn. Protocols with richer content flatten it to text before reaching the engine. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  /** assistant: the calls the model made in this turn, after `content` (often ""). */
  toolCalls?: ToolCall[];
  /** tool: the call this result answers. Without it (Ollama) a result answers the earliest open call of `toolName`, or the earliest. */
  toolCallId?: string;
  /** tool: the name of the tool that produced this result. */
  toolName?: string;
}

/** A JSON Schema object, as clients send it. */
export type JsonSchema = Record<string, unknown>;

/**
 * A bias for one token, or for every token of a text: a number is added to the token's logit (+100 practically forces
 * it, -100 practically bans it); `"never"` bans it outright. End-of-generation tokens can be biased too.
 */
export interface TokenBiasEntry {
  /** A token id, or a text whose every token gets the bias (tokenized without special tokens, as llama-server does). */
  token: number | string;
  bias: number | "never";
}

/** DRY ("don't repeat yourself") sampling: penalizes continuing a sequence that already occurred. */
export interface DryPenalty {
  /** Strength; 0 disables DRY. */
  multiplier: number;
  /** Default 1.75. */
  base?: number;
  /** Repeats up to this many tokens long are not penalized. Default 2. */
  allowedLength?: number;
  /** Generated tokens scanned for repeats; -1 = all of them. Default -1. */
  lastN?: number;
  /** Texts that end a repeated sequence. Default `["\n", ":", "\"", "*"]`. */
  sequenceBreakers?: string[];
}

/**
 * Sampling and control options shared by chat and completion calls. Unset fields fall back to the model's defaults.
 *
 * llama-server's `/completion` options map onto these as follows (a protocol plugin does the renaming):
 * `n_predict` → `maxTokens`, `temperature`/`top_k`/`top_p`/`min_p`/`seed` (-1 = random) → the same names,
 * `repeat_penalty`/`repeat_last_n`/`presence_penalty`/`frequency_penalty` → `repeatPenalty`/`repeatLastN`/...,
 * `dry_*` → `dry`, `xtc_probability`/`xtc_threshold` → `xtc`, `logit_bias` (ids or texts, `false` = `"never"`) →
 * `tokenBias`, `grammar` → `grammar`, `json_schema` → `format`, `ignore_eos` → `ignoreEos`, `n_probs` → `logprobs`,
 * `cache_prompt` → `reusePrompt`, `return_tokens` → `reportTokens`, token-array prompts → `CompletionRequest.prompt`,
 * `/infill`'s `input_prefix`/`input_suffix` → `prompt`/`suffix`, `n_cmpl` → `EngineFacade.completeChoices`.
 * node-llama-cpp 3.21.1's sampler has no typical-p, Mirostat, dynamic temperature or sampler reordering, so
 * `typical_p`, `mirostat*`, `dynatemp_*` and `samplers` have no engine option: a plugin ignores them (and lists them as
 * ignored) or rejects them.
 */
export interface GenerateOptions {
  /** Registry name or alias of the model. */
  model: string;
  /**
   * At most this many tokens; never more than the context leaves after the prompt (then the finish reason is "length").
   * 0 = generate nothing: only evaluate the prompt (with `scorePrompt`, score it).
   */
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  /** Random seed; without one every request gets a fresh random seed. */
  seed?: number;
  /** Generation stops before any of these strings; the string itself is not returned. */
  stop?: string[];
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /**
   * How many of the last tokens (prompt included, as llama-server counts them) the repeat, presence and frequency
   * penalties look at: 0 disables them, -1 = the whole context. Default 64.
   */
  repeatLastN?: number;
  /** DRY sampling (over the generated tokens; llama-server also scans the prompt). */
  dry?: DryPenalty;
  /** XTC sampling: with this probability, remove the most likely tokens above `threshold` but the least likely of them. */
  xtc?: { probability: number; threshold: number };
  /** Per-token logit biases. */
  tokenBias?: TokenBiasEntry[];
  /** Keep generating past end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /** Constrain the output: `"json"` = any JSON value, or a JSON Schema the output must match. */
  format?: "json" | JsonSchema;
  /** Constrain the output with a GBNF grammar (llama.cpp's grammar format). Not together with `format`. */
  grammar?: string;
  /**
   * Report log probabilities: every text event carries its tokens (`TextDelta.tokens`), each with its log probability
   * and this many most likely alternatives (0 = none, at most 100). The probabilities are those of the distribution the
   * token was sampled from: the model's full softmax at temperature 0 (plus any bias and penalties), otherwise after
   * top-k, top-p, min-p and temperature (llama-server's `post_sampling_probs`). Costs time per token that grows with
   * the vocabulary size, so it is computed only when asked for.
   */
  logprobs?: number;
  /** Every text event carries the tokens it was made of (`TextDelta.tokens`: id, text, bytes), one event per token. */
  reportTokens?: boolean;
  /**
   * Score the prompt: the start event carries its tokens (`GenerationStart.prompt`), each with its log probability given
   * the ones before it and `logprobs` alternatives (the model's raw softmax; the first token has none). The whole
   * prompt is evaluated again (no reuse). Costs a full-vocabulary distribution per prompt token.
   */
  scorePrompt?: boolean;
  /** Reuse the prompt prefix a sequence already holds (default true); false evaluates the whole prompt again. */
  reusePrompt?: boolean;
  /**
   * The summary carries `context`: the prompt's tokens and the generated ones, which a later completion can pass as
   * `CompletionRequest.context` to continue the exchange (and reuse the sequence's cache).
   */
  reportContext?: boolean;
  /**
   * Run on this one of the model's sequences (0 to `parallel` - 1), waiting for it if it is busy, e.g. to keep a
   * conversation's cache in one place (llama-server's `id_slot`). By default the engine picks the free sequence that
   * holds the longest prefix of the prompt.
   */
  sequence?: number;
  /** How long the model stays loaded once idle after this request, in ms: 0 = unload at once, negative = never. */
  keepAliveMs?: number;
  /**
   * Tokens of context for this request (prompt and reply), instead of the model's `context`. A smaller one is served
   * on the model's context, used only up to this size; a larger one gets a context of that size sharing the model's
   * weights (loaded on first use, kept and unloaded like the model). Past what the model was trained with (and past
   * its configured `context`) it is a 400 naming `contextSize`.
   */
  contextSize?: number;
  /** Aborting stops decoding at once and frees the sequence (or the queue place). */
  signal?: AbortSignal;
}

export interface ChatRequest extends GenerateOptions {
  messages: ChatMessage[];
  /** Functions the model may call; problems name them `tools[i].name`, `tools[i].parameters...`. */
  tools?: ToolDefinition[];
  /** Default `auto` (with tools). */
  toolChoice?: ToolChoice;
  /** Several calls in one turn, where the model's template supports it (default true); false = at most one. */
  parallelToolCalls?: boolean;
}

export interface CompletionRequest extends GenerateOptions {
  /**
   * The prompt: a text, or a list of texts and token ids joined in order (token ids go to the model as they are). With
   * `raw`, texts are tokenized with special tokens parsed, and a beginning-of-sequence token is added when the model
   * wants one and the prompt starts with a text (llama-server's rule). Token ids need `raw`.
   */
  prompt: string | (string | number)[];
  /** System prompt; only used when the prompt is templated. */
  system?: string;
  /** Send the prompt to the model as is, without the chat template. */
  raw?: boolean;
  /**
   * Fill in the middle: generate what goes between `prompt` (the text before) and this text after it. Needs a model
   * with fill-in-the-middle tokens (`ModelFacts.infill`); otherwise a 400 naming `suffix`. Implies `raw`.
   */
  suffix?: string;
  /**
   * Tokens of an earlier exchange (a summary's `context`) that this prompt continues: they go to the model as they are,
   * then the prompt (templated or raw) without its beginning-of-sequence token. Not with `suffix`.
   */
  context?: number[];
  /**
   * With `suffix`: other files the model sees before the text around the gap (llama-server's `input_extra`), oldest
   * first; in the model's repo-level layout when its vocabulary has repo and file-separator tokens.
   */
  files?: InfillFile[];
}

/** A file shown to a fill-in-the-middle prompt for context. */
export interface InfillFile {
  name?: string;
  text: string;
}

/**
 * Why generation ended: the model stopped (end of sequence or a stop string), hit max tokens, made tool calls, or the
 * client went away.
 */
export type FinishReason = "stop" | "length" | "toolCalls" | "abort";

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
  /** With `scorePrompt`: the prompt's tokens with their log probabilities. */
  prompt?: GeneratedToken[];
}

/** A token with its probability, as reported for a generated token's alternatives. */
export interface TokenLogprob {
  id: number;
  /** The token's own text (with its leading space, as llama.cpp's token-to-piece gives it; "" for special tokens). */
  text: string;
  /** The token's bytes in UTF-8; a byte-fallback token's single byte even when its text alone is not valid UTF-8. */
  bytes: number[];
  /** Natural log of the probability; -9999 stands for a probability of 0 (OpenAI's convention, JSON has no -Infinity). */
  logprob: number;
}

/** A generated token, reported with the text it belongs to when the request asks for tokens or log probabilities. */
export interface GeneratedToken {
  id: number;
  text: string;
  bytes: number[];
  /** With `logprobs`: this token's log probability. */
  logprob?: number;
  /** With `logprobs`: the most likely tokens at this position, most likely first (fewer when the sampler kept fewer). */
  top?: TokenLogprob[];
}

/** A piece of generated text. Pieces arrive in order; concatenated they are the whole output. */
export interface TextDelta {
  type: "text";
  text: string;
  /**
   * With `reportTokens` or `logprobs`: the tokens whose text begins in this piece, in order. A token's text may be cut
   * by a stop string, or still incomplete UTF-8 (then it arrives with the token that completes the character).
   */
  tokens?: GeneratedToken[];
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
  /** Which of the model's sequences ran it (0 to `parallel` - 1). */
  sequence: number;
  timings: GenerationTimings;
  /** With `reportContext`: the prompt's tokens, then the generated ones (as generated: a stop string's tokens included). */
  context?: number[];
  /**
   * Prompt-lookup speculative decoding (models.yaml `speculative`), when the generation used it: tokens predicted from
   * the prompt that the model evaluated, and how many of those it generated too.
   */
  speculation?: { predicted: number; accepted: number };
  /**
   * A tool call the generation stopped inside (`finishReason` "length" or "abort"): it had a `toolCallStart` and
   * argument pieces but no `toolCallEnd`, so it is not among `collect()`'s `toolCalls`.
   */
  unfinishedToolCall?: UnfinishedToolCall;
}

export type GenerationEvent = GenerationStart | TextDelta | ToolCallEvent | GenerationSummary;

/**
 * A running generation: iterate it for events (`start`, then `text`s and tool-call events, then `done`), or await
 * `collect()` for the whole text and the calls. Nothing runs until it is first read; read it at most once.
 */
export interface Generation extends AsyncIterable<GenerationEvent> {
  /** The registry name of the model serving it (aliases resolved), known before the first event. */
  readonly model: string;
  /**
   * The whole text and the completed tool calls; `tokens` holds every reported token and `prompt` the scored prompt,
   * when the request asked for them.
   */
  collect(): Promise<{
    text: string;
    toolCalls: ToolCall[];
    tokens?: GeneratedToken[];
    prompt?: GeneratedToken[];
    summary: GenerationSummary;
  }>;
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
  /**
   * Every key of the GGUF header, flattened to its dotted name (`general.name`, `llama.context_length`,
   * `tokenizer.ggml.model`), as plain values. Lists longer than 64 items (the vocabulary, merges, token types: megabytes)
   * are given as empty lists, so their keys still show.
   */
  metadata: Record<string, unknown>;
  /** The weight tensors: name, element type (`Q4_K`, `F32`, ...) and shape. */
  tensors: { name: string; type: string; shape: number[] }[];
}

/** Sampling settings a model uses when a request leaves them out (models.yaml's `defaults`). */
export type ModelDefaults = Pick<
  GenerateOptions,
  "temperature" | "topP" | "topK" | "minP" | "seed" | "maxTokens" | "stop" | "repeatPenalty" | "presencePenalty" | "frequencyPenalty"
>;

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
  /** The GGUF file's path, when it is on disk. */
  file?: string;
  /** Sampling settings used when a request leaves them out. */
  defaults: ModelDefaults;
  /**
   * The Jinja chat template the model's chats are rendered with, when it is one: models.yaml's `chat_template`, else
   * the GGUF's own (with `chat_template: auto`). Undefined when a chat wrapper is named, or the GGUF has no template
   * (then ChatML is used).
   */
  chatTemplate?: string;
  /** From the GGUF header, when the file is on disk (not yet for a model that still has to be downloaded). */
  facts?: ModelFacts;
  /**
   * What the model can be asked for, from its header and chat template (empty while the file is not on disk):
   * `completion` (text generation) or `embedding`, `tools` (its template documents tools), `insert` (fill in the
   * middle: the vocabulary has prefix, suffix and middle tokens).
   */
  capabilities: ModelCapability[];
  /** Where the model comes from, as models.yaml gives it (a path, `synthetic:<preset>`, `hf:...` or an http(s) URL). */
  source: string;
}

/** One of a loaded model's sequences (llama-server's "slots"). */
export interface SequenceStatus {
  /** 0 to `parallel` - 1, as `GenerateOptions.sequence` and `GenerationSummary.sequence` name it. */
  id: number;
  /** Leased to a request right now. */
  busy: boolean;
  /** Tokens it can hold. */
  contextSize: number;
  /** Tokens it holds now (the last request's prompt and output, reusable by a request that continues them). */
  cachedTokens: number;
}

export type ModelCapability = "completion" | "embedding" | "tools" | "insert";

/** A model in memory and what it is doing now. */
export interface LoadedModelStatus {
  name: string;
  /** When it will be unloaded (ISO 8601); undefined while in use or when it never expires. */
  expiresAt?: string;
  sizeBytes: number;
  /** Tokens per sequence of this context. A model serving requests that asked for a larger context has one more entry. */
  contextSize: number;
  /** Sequences generating right now. */
  activeSequences: number;
  /** Requests waiting for a free sequence. */
  queuedRequests: number;
  /** Each of this context's sequences (`parallel` of them), with what it holds now. */
  sequences: SequenceStatus[];
  /** KV cache capacity in tokens: `contextSize` x the number of `sequences`. */
  kvCacheTokens: number;
  /** Tokens that running requests hold in the KV cache now (idle sequences keep their cache for reuse; not counted). */
  kvCacheUsedTokens: number;
  /** RAM estimated for this context (KV cache, buffers) and, on the model's first context, its weights. */
  memoryBytes: number;
}

/** How far a download has got. */
export interface DownloadProgress {
  /** Bytes of the whole file (every part of a split model); 0 while unknown. */
  totalBytes: number;
  downloadedBytes: number;
  /** Recent speed in bytes per second; 0 while unknown. */
  bytesPerSecond: number;
  /** Seconds left at that speed, when known. */
  secondsLeft?: number;
}

/** Fetch a model into the cache and add it to the registry (models.yaml, when the server has one). */
export interface PullRequest {
  /**
   * `hf:<owner>/<repo>:<quant>` (the file picked as node-llama-cpp picks it; no quant: Q4_K_M), Ollama's
   * `hf.co/<owner>/<repo>:<quant>`, `hf:<owner>/<repo>/<file>.gguf`, an http(s) URL of a GGUF, or the name of a model
   * already in the registry (its file is downloaded if it is not yet).
   */
  source: string;
  /** The registry name for a new model; default: the file's name without `.gguf`. */
  name?: string;
  onProgress?(event: PullProgress): void;
  /** Stops waiting; the download itself stops (resumable) once nobody else waits for it. */
  signal?: AbortSignal;
}

/** One step of a pull. */
export type PullProgress =
  | { stage: "resolving"; source: string }
  /** Bytes arriving; `sha256` when the server announced the file's hash (then it is checked at the end). */
  | { stage: "downloading"; file: string; sha256?: string; progress: DownloadProgress }
  | { stage: "verifying"; file: string; sha256?: string }
  | { stage: "registering"; model: string };

export interface PullResult {
  /** The registry name that serves the model. */
  model: string;
  /** Its source as models.yaml has it (a repository resolved to `hf:<owner>/<repo>/<file>.gguf`). */
  source: string;
  sizeBytes: number;
  /** The file's SHA-256, when the server announced it (and the download was checked against it). */
  sha256?: string;
  /** False when the registry had the model already. */
  added: boolean;
  /** The models.yaml the model was added to; absent when the server has none (then it lasts until a restart). */
  savedTo?: string;
}

export interface EmbedRequest {
  model: string;
  /** Texts, or token-id lists, one embedding each. */
  input: (string | number[])[];
  /** Length of the vectors wanted: must be the model's own (`ModelFacts.embeddingLength`); shortening is not supported. */
  dimensions?: number;
  /** Cut an input longer than the embedding context to its first tokens instead of refusing it (400). Default false. */
  truncate?: boolean;
  /** Scale each vector to length 1 (default true); false returns the model's pooled vector as it is. */
  normalize?: boolean;
  signal?: AbortSignal;
  /** As in `GenerateOptions.keepAliveMs`. */
  keepAliveMs?: number;
}

export interface EmbedResult {
  model: string;
  /** One vector per input: unit length (L2-normalized), as OpenAI, Ollama and llama-server return them, unless `normalize` is false. */
  embeddings: number[][];
  promptTokens: number;
}

/** How `EngineFacade.tokenize` reads a text. */
export interface TokenizeOptions {
  /** Texts of special tokens (`<|eot_id|>`, `<s>`) become those tokens; default false: they are plain text. */
  specialTokens?: boolean;
  /** Start with the beginning-of-sequence token, when the model wants one. Default false. */
  bos?: boolean;
}

/** What decides a chat request's prompt: its messages and, with tools (unless the tool choice is none), their documentation. */
export type ChatPromptRequest = Pick<ChatRequest, "model" | "messages" | "tools" | "toolChoice">;

/** A chat request's prompt as the model sees it. */
export interface ChatPrompt {
  /** The chat template's output, special tokens written as their text (`<|im_start|>`, `<s>`). */
  text: string;
  /** The tokens `chat()` evaluates for the same messages and tools. */
  tokens: number[];
}

/** The engine as protocol plugins see it. Everything returns neutral types; no plugin touches node-llama-cpp. */
export interface EngineFacade {
  /** Every model in the registry, with its GGUF facts when the file is on disk. */
  listModels(): Promise<ModelInfo[]>;
  /** The model a name or alias points to, or undefined. */
  findModel(name: string): Promise<ModelInfo | undefined>;
  /**
   * The SHA-256 of the model's GGUF file (64 hex digits), or undefined while the file is not on disk (not yet written
   * or downloaded). Computed once per file version (path, size, modification time) by streaming the file through the
   * hash, so the first call for a large file takes seconds but never blocks other requests; kept across restarts.
   */
  digest(model: string): Promise<string | undefined>;
  /**
   * The registry name of the model for requests that name none (models.yaml's `default_model`, else the only model), or
   * undefined. For protocols whose clients may leave the model out (llama-server's serve one model).
   */
  defaultModel(): string | undefined;
  chat(request: ChatRequest): Generation;
  complete(request: CompletionRequest): Generation;
  /**
   * `count` answers to one request, generated side by side on `count` of the model's sequences (a 400 naming
   * `choices` when `count` is more than the model's `parallel`). With a `seed`, answer i uses `seed + i`.
   */
  chatChoices(request: ChatRequest, count: number): Generation[];
  completeChoices(request: CompletionRequest, count: number): Generation[];
  embed(request: EmbedRequest): Promise<EmbedResult>;
  tokenize(model: string, text: string, options?: TokenizeOptions): Promise<number[]>;
  detokenize(model: string, tokens: number[]): Promise<string>;
  /**
   * Each token's own text and bytes, as llama.cpp's token-to-piece gives them: with its leading space, special tokens
   * as their text (`<s>`), a byte-fallback token as its one byte. Ids outside the vocabulary are a 400 naming `tokens`.
   */
  tokenPieces(model: string, tokens: number[]): Promise<GeneratedToken[]>;
  /**
   * The prompt `chat()` would evaluate for these messages and tools, as text and tokens, without generating anything.
   * Messages and tools are checked as `chat()` checks them.
   */
  chatPrompt(request: ChatPromptRequest): Promise<ChatPrompt>;
  /** Load a model now (with `contextSize`, a context of that size, as `GenerateOptions.contextSize`); resolves when it is ready. */
  load(model: string, options?: { keepAliveMs?: number; contextSize?: number }): Promise<void>;
  /** Unload a model once its running requests end. */
  unload(model: string): Promise<void>;
  /** Models loaded right now, with their sequences' activity. */
  loadedModels(): LoadedModelStatus[];
  /**
   * Download a model and add it to the registry: resolves once it is on disk, verified (a GGUF whose tensors are all
   * there, with the SHA-256 the server announced) and servable under `PullResult.model`. Unknown sources are a
   * `not_found` problem.
   */
  pull(request: PullRequest): Promise<PullResult>;
}
