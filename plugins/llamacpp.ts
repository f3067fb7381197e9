/**
 * llama.cpp's `llama-server` protocol over the llamaport engine, so its clients work unchanged: /completion, /infill,
 * /tokenize, /detokenize, /apply-template, /embedding, /props, /slots, and the routes llama-server serves without the
 * /v1 prefix as the OpenAI plugin's. Written on the public plugin API only, as a third-party plugin would be.
 * @module
 */
import {
  type ChatMessage,
  choiceFrames,
  definePlugin,
  type DryPenalty,
  type EngineFacade,
  type FieldTable,
  frames,
  type GeneratedToken,
  type GenerateOptions,
  type Generation,
  type GenerationEvent,
  type GenerationSummary,
  LlamaportError,
  type ModelDefaults,
  type ModelInfo,
  nullable,
  type Problem,
  type ProblemCode,
  route,
  type ServerInfo,
  type StaticDecode,
  type StreamFormat,
  slot,
  sse,
  t,
  takeTurns,
  TEXT,
  type TokenBiasEntry,
  template,
} from "llamaport";

// ---------------------------------------------------------------------------------------------------------------
// Request bodies. llama-server ignores fields it does not know and treats null as absent; so do these schemas.

const number = () => nullable(t.Number());
const integer = (options: { minimum?: number } = {}) => nullable(t.Integer(options));
const boolean = () => nullable(t.Boolean());

/** The fields of /completion and /infill (llama-server's `make_llama_cmpl_schema`), without the prompt. */
const generationFields = {
  model: nullable(t.String({ minLength: 1 })),
  stream: boolean(),
  n_predict: integer({ minimum: -1 }),
  max_tokens: integer({ minimum: -1 }),
  max_completion_tokens: integer({ minimum: -1 }),
  temperature: number(),
  top_k: integer(),
  top_p: number(),
  min_p: number(),
  typical_p: number(),
  seed: integer(),
  stop: nullable(t.Union([t.String(), t.Array(t.String())])),
  repeat_penalty: number(),
  repeat_last_n: integer({ minimum: -1 }),
  presence_penalty: number(),
  frequency_penalty: number(),
  dry_multiplier: number(),
  dry_base: number(),
  dry_allowed_length: integer({ minimum: 1 }),
  dry_penalty_last_n: integer({ minimum: -1 }),
  dry_sequence_breakers: nullable(t.Array(t.String(), { minItems: 1 })),
  xtc_probability: number(),
  xtc_threshold: number(),
  ignore_eos: boolean(),
  // Checked by `tokenBiasOf`: [[token or text, bias or false], ...] or {"token or text": bias or false}.
  logit_bias: nullable(t.Union([t.Array(t.Unknown()), t.Record(t.String(), t.Unknown())])),
  n_probs: integer({ minimum: 0 }),
  logprobs: integer({ minimum: 0 }),
  post_sampling_probs: boolean(),
  grammar: nullable(t.String()),
  grammar_lazy: boolean(),
  json_schema: nullable(t.Record(t.String(), t.Unknown())),
  cache_prompt: boolean(),
  id_slot: integer({ minimum: -1 }),
  return_tokens: boolean(),
  n_cmpl: integer({ minimum: 1 }),
  n: integer({ minimum: 1 }),
  n_indent: integer({ minimum: 0 }),
  t_max_predict_ms: integer({ minimum: -1 }),
  response_fields: nullable(t.Array(t.String())),
  lora: nullable(t.Array(t.Unknown())),
};
const generationBody = t.Object(generationFields);
type GenerationBody = StaticDecode<typeof generationBody>;

// Prompts have several shapes (a text, token ids mixed with texts, several prompts): `promptsOf` checks them, so a
// client hears which element is wrong rather than TypeBox's "expected union value".
const completionBody = t.Object({ ...generationFields, prompt: t.Union([t.String(), t.Array(t.Unknown(), { minItems: 1 })]) });

const infillBody = t.Object({
  ...generationFields,
  input_prefix: t.String(),
  input_suffix: t.String(),
  input_extra: nullable(t.Array(t.Object({ text: t.String(), filename: t.Optional(t.String()) }))),
  prompt: nullable(t.String()),
});

const tokenizeBody = t.Object({
  model: nullable(t.String({ minLength: 1 })),
  content: nullable(t.Union([t.String(), t.Array(t.Union([t.String(), t.Integer()]))])),
  add_special: boolean(),
  parse_special: boolean(),
  with_pieces: boolean(),
});

const detokenizeBody = t.Object({ model: nullable(t.String({ minLength: 1 })), tokens: nullable(t.Array(t.Integer())) });

/** /apply-template's and /chat/completions/input_tokens' body: the messages and tools of a /chat/completions request. */
const messagesBody = t.Object({
  model: nullable(t.String({ minLength: 1 })),
  messages: t.Array(
    t.Object({
      role: t.Union([t.Literal("system"), t.Literal("developer"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
      // Optional: an assistant message that only calls tools may leave it out (checked in `chatMessage`).
      content: t.Optional(t.Union([t.String(), t.Array(t.Unknown()), t.Null()])),
      tool_calls: nullable(
        t.Array(
          t.Object({
            id: t.String(),
            type: t.Optional(t.Literal("function")),
            function: t.Object({ name: t.String(), arguments: t.String() }),
          }),
        ),
      ),
      tool_call_id: nullable(t.String()),
    }),
    { minItems: 1 },
  ),
  // Function tools; other types are refused by `chatPrompt`, naming `tools[i].type`.
  tools: nullable(
    t.Array(
      t.Object({
        type: t.String(),
        function: t.Optional(
          t.Object({ name: t.String(), description: t.Optional(t.String()), parameters: t.Optional(t.Record(t.String(), t.Unknown())) }),
        ),
      }),
    ),
  ),
  tool_choice: nullable(
    t.Union([
      t.Literal("auto"),
      t.Literal("none"),
      t.Literal("required"),
      t.Object({ type: t.Literal("function"), function: t.Object({ name: t.String() }) }),
    ]),
  ),
});
type MessagesBody = StaticDecode<typeof messagesBody>;

const embeddingBody = t.Object({
  model: nullable(t.String({ minLength: 1 })),
  content: nullable(t.Union([t.String(), t.Array(t.Unknown(), { minItems: 1 })])),
  input: nullable(t.Union([t.String(), t.Array(t.Unknown(), { minItems: 1 })])),
  embd_normalize: integer({ minimum: -1 }),
});

/** Engine option names to llama-server's fields, for naming fields in errors. */
const fields: FieldTable = {
  maxTokens: "n_predict",
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  seed: "seed",
  stop: "stop",
  repeatPenalty: "repeat_penalty",
  repeatLastN: "repeat_last_n",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  dry: "dry_multiplier",
  xtc: "xtc_probability",
  tokenBias: "logit_bias",
  grammar: "grammar",
  format: "json_schema",
  logprobs: "n_probs",
  choices: "n_cmpl",
  sequence: "id_slot",
  prompt: "prompt",
  input: "content",
  tokens: "tokens",
  messages: "messages",
  toolChoice: "tool_choice",
  "tools[].name": "tools[].function.name",
  "tools[].parameters": "tools[].function.parameters",
};

// ---------------------------------------------------------------------------------------------------------------
// Requests -> engine options

/** The model a request names, else the default one (llama-server serves one model, so its clients often name none). */
function modelOf(name: string | undefined, engine: EngineFacade): string {
  const model = name ?? engine.defaultModel();
  if (model === undefined)
    throw new LlamaportError("invalid_request", "model is required: models.yaml has several models and no default_model", {
      param: "model",
    });
  return model;
}

const clamp = (value: number | undefined, low: number, high: number) =>
  value === undefined ? undefined : Math.min(high, Math.max(low, value));

/**
 * The engine options of a /completion or /infill body. As llama-server: temperature, top_p, min_p and the XTC values
 * are clamped into range, seed -1 (or 2^32-1) is random, n_predict -1 is unlimited, empty stop strings are dropped,
 * and a grammar wins over a JSON schema.
 */
function optionsOf(body: GenerationBody, model: string, signal: AbortSignal): GenerateOptions {
  const topP = clamp(body.top_p, 0, 1);
  const nPredict = body.n_predict ?? body.max_tokens ?? body.max_completion_tokens;
  const stop = (typeof body.stop === "string" ? [body.stop] : (body.stop ?? [])).filter((s) => s !== "");
  const nProbs = body.n_probs ?? body.logprobs;
  return {
    model,
    maxTokens: nPredict === -1 ? undefined : nPredict,
    temperature: clamp(body.temperature, 0, Number.POSITIVE_INFINITY),
    // top_p 0 keeps only the most likely token, as llama.cpp's top-p sampler does (it keeps at least one).
    ...(topP === 0 ? { topK: 1 } : { topP, topK: clamp(body.top_k, 0, 2 ** 31 - 1) }),
    minP: clamp(body.min_p, 0, 1),
    seed: body.seed === undefined || body.seed === -1 || body.seed === 2 ** 32 - 1 ? undefined : body.seed,
    stop: stop.length > 0 ? stop : undefined,
    repeatPenalty: body.repeat_penalty,
    repeatLastN: body.repeat_last_n,
    presencePenalty: body.presence_penalty,
    frequencyPenalty: body.frequency_penalty,
    dry: dryOf(body),
    xtc: body.xtc_probability
      ? { probability: clamp(body.xtc_probability, 0, 1)!, threshold: clamp(body.xtc_threshold ?? 0.1, 0, 1)! }
      : undefined,
    tokenBias: body.logit_bias === undefined ? undefined : tokenBiasOf(body.logit_bias),
    ignoreEos: body.ignore_eos,
    ...(body.grammar ? { grammar: body.grammar } : body.json_schema ? { format: body.json_schema } : {}),
    logprobs: nProbs ? nProbs : undefined,
    reportTokens: body.stream === true || body.return_tokens === true,
    reusePrompt: body.cache_prompt,
    sequence: body.id_slot === undefined || body.id_slot === -1 ? undefined : body.id_slot,
    signal,
  };
}

function dryOf(body: GenerationBody): DryPenalty | undefined {
  if (!body.dry_multiplier) return undefined;
  return {
    multiplier: body.dry_multiplier,
    // llama-server replaces a base under 1 with the default.
    base: body.dry_base !== undefined && body.dry_base >= 1 ? body.dry_base : undefined,
    allowedLength: body.dry_allowed_length,
    lastN: body.dry_penalty_last_n,
    sequenceBreakers: body.dry_sequence_breakers,
  };
}

/** llama-server's `logit_bias`: `[[token id or text, bias or false], ...]` or `{"id or text": bias or false}`; false bans. */
function tokenBiasOf(bias: unknown[] | Record<string, unknown>): TokenBiasEntry[] {
  const entry = (token: unknown, value: unknown, at: string): TokenBiasEntry => {
    if ((typeof token !== "string" && !Number.isInteger(token)) || (value !== false && typeof value !== "number"))
      throw new LlamaportError("invalid_request", `logit_bias${at} must be a [token id or text, number or false] pair`, {
        param: "logit_bias",
      });
    const id = typeof token === "string" && /^\d+$/.test(token) ? Number(token) : (token as number | string);
    return { token: id, bias: value === false ? "never" : (value as number) };
  };
  if (Array.isArray(bias))
    return bias.map((pair, index) =>
      Array.isArray(pair) && pair.length === 2 ? entry(pair[0], pair[1], `[${index}]`) : entry(undefined, 0, `[${index}]`),
    );
  return Object.entries(bias).map(([key, value]) => entry(key, value, `["${key}"]`));
}

/** Fields llama-server has that cannot be served here: a 400 rather than an answer without them. */
function refuseFields(body: GenerationBody): void {
  if (body.lora?.length) throw new LlamaportError("invalid_request", "lora: this server has no LoRA adapters", { param: "lora" });
  if (body.grammar_lazy)
    throw new LlamaportError("invalid_request", "grammar_lazy is not supported: a grammar applies from the first token", {
      param: "grammar_lazy",
    });
}

/** One prompt: a text, or texts and token ids joined in order. */
type Prompt = string | (string | number)[];

/**
 * llama-server's prompt shapes: a text; a list holding any token id is one prompt (ids and texts mixed); any other list
 * is several prompts, each a text, a mixed list or `{prompt_string}` (`multimodal_data` is refused: text only here).
 */
function promptsOf(prompt: string | unknown[]): Prompt[] {
  if (typeof prompt === "string") return [prompt];
  if (prompt.some((part) => typeof part === "number")) return [mixedPrompt(prompt, "prompt")];
  return prompt.map((item, index) => {
    const at = `prompt[${index}]`;
    if (typeof item === "string") return item;
    if (Array.isArray(item)) return mixedPrompt(item, at);
    const { prompt_string, multimodal_data } = (item ?? {}) as { prompt_string?: unknown; multimodal_data?: unknown[] };
    if (Array.isArray(multimodal_data) && multimodal_data.length > 0)
      throw new LlamaportError("invalid_request", `${at}.multimodal_data is not supported: llamaport's models read text only`, {
        param: "prompt",
      });
    if (typeof prompt_string === "string") return prompt_string;
    throw new LlamaportError("invalid_request", `${at} must be a text, a list of token ids and texts, or {"prompt_string": text}`, {
      param: "prompt",
    });
  });
}

function mixedPrompt(parts: unknown[], at: string): (string | number)[] {
  if (parts.length === 0) throw new LlamaportError("invalid_request", `${at} must not be empty`, { param: "prompt" });
  for (const [index, part] of parts.entries())
    if (typeof part !== "string" && !(Number.isInteger(part) && (part as number) >= 0))
      throw new LlamaportError("invalid_request", `${at}[${index}] must be a token id (an integer >= 0) or a text`, { param: "prompt" });
  return parts as (string | number)[];
}

// ---------------------------------------------------------------------------------------------------------------
// Responses

/** llama-server's error `type` for each problem, and its status. */
const errorTypes: Record<ProblemCode, string> = {
  invalid_request: "invalid_request_error",
  too_large: "invalid_request_error",
  unsupported_media_type: "invalid_request_error",
  unauthorized: "authentication_error",
  forbidden: "permission_error",
  not_found: "not_found_error",
  context_exceeded: "exceed_context_size_error",
  busy: "unavailable_error",
  unavailable: "unavailable_error",
  not_supported: "not_supported_error",
  aborted: "server_error",
  internal: "server_error",
};

function errorBody(problem: Problem) {
  const tokens = problem.code === "context_exceeded" && problem.tokens;
  return {
    error: {
      code: problem.status,
      message: problem.message,
      type: errorTypes[problem.code],
      ...(tokens && { n_prompt_tokens: tokens.prompt, n_ctx: tokens.context }),
    },
  };
}

/** One token as `completion_probabilities` shows it: log probabilities, or with `post_sampling_probs` probabilities. */
function probabilityOf(token: GeneratedToken, probabilities: boolean) {
  const value = (logprob: number) => (probabilities ? Math.exp(logprob) : logprob);
  const key = probabilities ? "prob" : "logprob";
  return {
    id: token.id,
    token: token.text,
    bytes: token.bytes,
    [key]: value(token.logprob ?? 0),
    [probabilities ? "top_probs" : "top_logprobs"]: (token.top ?? []).map((alt) => ({
      id: alt.id,
      token: alt.text,
      bytes: alt.bytes,
      [key]: value(alt.logprob),
    })),
  };
}

/** llama-server's `timings` (its `server_slot_stats`): prompt tokens evaluated and generated, with their times and rates. */
function timingsOf(summary: GenerationSummary) {
  const { promptMs, generateMs } = summary.timings;
  const promptN = summary.promptTokens - summary.cachedTokens;
  const predictedN = summary.completionTokens;
  const per = (ms: number, n: number) => (n > 0 ? ms / n : 0);
  const rate = (ms: number, n: number) => (ms > 0 ? (1e3 * n) / ms : 0);
  return {
    cache_n: summary.cachedTokens,
    prompt_n: promptN,
    prompt_ms: promptMs,
    prompt_per_token_ms: per(promptMs, promptN),
    prompt_per_second: rate(promptMs, promptN),
    predicted_n: predictedN,
    predicted_ms: generateMs,
    predicted_per_token_ms: per(generateMs, predictedN),
    predicted_per_second: rate(generateMs, predictedN),
  };
}

/** Why generation ended, in llama-server's words; `limited` when an `n_indent` or `t_max_predict_ms` rule stopped it. */
function stopTypeOf(summary: GenerationSummary, limited: boolean): "eos" | "word" | "limit" | "none" {
  if (summary.finishReason === "length" || limited) return "limit";
  if (summary.finishReason === "abort") return "none";
  return summary.stopSequence === undefined ? "eos" : "word";
}

/** llama-server's sampler chain, less the samplers node-llama-cpp 3.21.1 does not have (typical-p, top-n-sigma). */
const samplers = ["penalties", "dry", "top_k", "top_p", "min_p", "xtc", "temperature"];

/**
 * What the engine uses when neither the request nor models.yaml says: llama-server's own defaults (the engine took
 * them from it), so a request answers alike on both.
 */
const serverDefaults = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05, repeatLastN: 64 };

/**
 * `generation_settings` (and `/props`' `default_generation_settings.params`): what the request ran with, the model's
 * defaults (models.yaml's, else llama-server's) filling in what it left out. Samplers this engine lacks show their
 * "off" values, which is what ran.
 */
function settingsOf(o: Partial<GenerateOptions>, d: ModelDefaults, extra: { stream: boolean; nProbs: number; postSampling: boolean }) {
  const maxTokens = o.maxTokens ?? d.maxTokens ?? -1;
  return {
    seed: o.seed ?? d.seed ?? 2 ** 32 - 1,
    temperature: o.temperature ?? d.temperature ?? serverDefaults.temperature,
    dynatemp_range: 0,
    dynatemp_exponent: 1,
    top_k: o.topK ?? d.topK ?? serverDefaults.topK,
    top_p: o.topP ?? d.topP ?? serverDefaults.topP,
    min_p: o.minP ?? d.minP ?? serverDefaults.minP,
    xtc_probability: o.xtc?.probability ?? 0,
    xtc_threshold: o.xtc?.threshold ?? 0.1,
    typical_p: 1,
    repeat_last_n: o.repeatLastN ?? serverDefaults.repeatLastN,
    repeat_penalty: o.repeatPenalty ?? d.repeatPenalty ?? 1,
    presence_penalty: o.presencePenalty ?? d.presencePenalty ?? 0,
    frequency_penalty: o.frequencyPenalty ?? d.frequencyPenalty ?? 0,
    dry_multiplier: o.dry?.multiplier ?? 0,
    dry_base: o.dry?.base ?? 1.75,
    dry_allowed_length: o.dry?.allowedLength ?? 2,
    dry_penalty_last_n: o.dry?.lastN ?? -1,
    dry_sequence_breakers: o.dry?.sequenceBreakers ?? ["\n", ":", '"', "*"],
    mirostat: 0,
    mirostat_tau: 5,
    mirostat_eta: 0.1,
    stop: o.stop ?? d.stop ?? [],
    max_tokens: maxTokens,
    n_predict: maxTokens,
    n_keep: 0,
    n_discard: 0,
    ignore_eos: o.ignoreEos === true,
    stream: extra.stream,
    logit_bias: (o.tokenBias ?? []).map(({ token, bias }) => ({ bias: bias === "never" ? false : bias, token })),
    n_probs: extra.nProbs,
    min_keep: 0,
    grammar: o.grammar ?? "",
    samplers,
    timings_per_token: false,
    post_sampling_probs: extra.postSampling,
    lora: [],
  };
}

/** `response_fields`: only these fields, a `a/b` path lifted to the top under its own name (llama-server's `json_get_nested_values`). */
function selectFields(result: Record<string, unknown>, paths: readonly string[] | undefined): Record<string, unknown> {
  if (!paths?.length) return result;
  const selected: Record<string, unknown> = {};
  for (const path of paths) {
    let value: unknown = result;
    for (const key of path.split("/"))
      value = value !== null && typeof value === "object" && key in value ? (value as Record<string, unknown>)[key] : undefined;
    if (value !== undefined) selected[path] = value;
  }
  return selected;
}

// ---------------------------------------------------------------------------------------------------------------
// /completion and /infill

/** What every result of one /completion request shares. */
interface CompletionRun {
  body: GenerationBody;
  options: GenerateOptions;
  info: ModelInfo;
  /** The request's prompt texts, by prompt. */
  promptTexts: string[];
  /** Completions per prompt (`n_cmpl`). */
  perPrompt: number;
}

/** The final result of one generation: llama-server's `to_json_non_oaicompat`. */
function finalResult(run: CompletionRun, index: number, outcome: Outcome, stream: boolean) {
  const { summary } = outcome;
  const nProbs = run.options.logprobs ?? 0;
  const result: Record<string, unknown> = {
    index,
    content: stream ? "" : outcome.text,
    tokens: stream || !run.body.return_tokens ? [] : outcome.tokens.map((token) => token.id),
    id_slot: summary.sequence,
    stop: true,
    model: summary.model,
    tokens_predicted: summary.completionTokens,
    tokens_evaluated: summary.promptTokens,
    generation_settings: settingsOf(run.options, run.info.defaults, {
      stream,
      nProbs,
      postSampling: run.body.post_sampling_probs === true,
    }),
    prompt: run.promptTexts[Math.floor(index / run.perPrompt)] ?? "",
    has_new_line: outcome.hasNewLine,
    truncated: false,
    stop_type: stopTypeOf(summary, outcome.limited),
    stopping_word: summary.stopSequence ?? "",
    tokens_cached: summary.promptTokens + summary.completionTokens,
    timings: timingsOf(summary),
  };
  if (!stream && nProbs > 0)
    result.completion_probabilities = outcome.tokens.map((token) => probabilityOf(token, run.body.post_sampling_probs === true));
  return selectFields(result, run.body.response_fields);
}

/** A finished generation as the final result needs it. */
interface Outcome {
  text: string;
  tokens: GeneratedToken[];
  summary: GenerationSummary;
  hasNewLine: boolean;
  limited: boolean;
}

/**
 * llama-server's stops for code completion, applied to the text as it comes: `n_indent` ends generation at the first
 * new line indented less (that line is cut), `t_max_predict_ms` at the first new line after that long. `halt` stops
 * the engine (its summary then says "abort"; the result says `stop_type: "limit"`).
 */
class LineLimits {
  text = "";
  /** Where the text is cut, once a rule fired. */
  cut?: number;
  hasNewLine = false;
  private lastLine = 0;
  private startedAt = 0;

  constructor(
    private readonly indent: number,
    private readonly maxPredictMs: number,
    private readonly halt: () => void,
  ) {}

  /** Takes a piece of text; returns the part of it that stays. */
  take(piece: string): string {
    if (this.cut !== undefined) return "";
    if (this.startedAt === 0) this.startedAt = performance.now();
    const start = this.text.length;
    this.text += piece;
    if (this.hasNewLine && this.indent > 0) this.checkIndent();
    if (this.indent > 0) {
      const newline = this.text.indexOf("\n", this.lastLine);
      if (newline >= 0) this.lastLine = newline + 1;
    }
    if (piece.includes("\n")) {
      this.hasNewLine = true;
      if (this.maxPredictMs > 0 && performance.now() - this.startedAt > this.maxPredictMs) this.stop(this.text.length);
    }
    return this.text.slice(start, Math.max(start, this.cut ?? this.text.length));
  }

  /** The whole text, cut where a rule fired. */
  get kept(): string {
    return this.text.slice(0, this.cut);
  }

  private checkIndent(): void {
    if (this.lastLine === 0) return;
    let at = this.lastLine;
    while (this.text[at] === " " || this.text[at] === "\t") at++;
    if (at < this.text.length && at - this.lastLine < this.indent) this.stop(at);
  }

  private stop(at: number): void {
    this.cut = at;
    this.halt();
  }
}

/** The generation's events with `limits` applied: text past a stop is dropped. */
async function* limitedEvents(generation: AsyncIterable<GenerationEvent>, limits: LineLimits): AsyncGenerator<GenerationEvent> {
  for await (const event of generation) {
    if (event.type !== "text") yield event;
    else if (limits.cut === undefined) {
      const text = limits.take(event.text);
      yield text === event.text ? event : { ...event, text };
    }
  }
}

/** Reads a whole generation (with `limits` when the request has line rules). */
async function outcomeOf(generation: Generation, limits: LineLimits | undefined): Promise<Outcome> {
  let text = "";
  const tokens: GeneratedToken[] = [];
  for await (const event of limits ? limitedEvents(generation, limits) : generation) {
    if (event.type === "text") {
      text += event.text;
      if (event.tokens) for (const token of event.tokens) tokens.push(token);
    } else if (event.type === "done")
      return {
        text: limits ? limits.kept : text,
        tokens,
        summary: event,
        hasNewLine: limits?.hasNewLine ?? text.includes("\n"),
        limited: limits?.cut !== undefined,
      };
  }
  throw new Error("generation ended without a summary");
}

/** The stream of one generation: a chunk per token (llama-server's partial results), then the final result. */
function streamFormat(run: CompletionRun, index: number, limits: LineLimits | undefined): StreamFormat {
  const nProbs = run.options.logprobs ?? 0;
  const post = run.body.post_sampling_probs === true;
  const seen = { predicted: 0, evaluated: 0, newline: false, text: "" };
  return {
    start: (start) => {
      seen.evaluated = start.promptTokens;
      return [];
    },
    text: template({
      index,
      content: TEXT,
      tokens: slot((delta) => (delta.tokens ?? []).map((token) => token.id)),
      stop: false,
      id_slot: -1,
      tokens_predicted: slot((delta) => {
        if (!seen.newline && delta.text.includes("\n")) seen.newline = true;
        seen.predicted += delta.tokens?.length ?? 1;
        return seen.predicted;
      }),
      tokens_evaluated: slot(() => seen.evaluated),
      ...(nProbs > 0 && { completion_probabilities: slot((delta) => (delta.tokens ?? []).map((token) => probabilityOf(token, post))) }),
    }),
    done: (summary) => [
      finalResult(
        run,
        index,
        { text: "", tokens: [], summary, hasNewLine: limits?.hasNewLine ?? seen.newline, limited: limits?.cut !== undefined },
        true,
      ),
    ],
  };
}

/** A generation whose events pass through `limits`. */
function limitedGeneration(generation: Generation, limits: LineLimits): Generation {
  return {
    model: generation.model,
    [Symbol.asyncIterator]: () => limitedEvents(generation, limits),
    collect: () => Promise.reject(new Error("read a limited generation with outcomeOf")),
  };
}

/** Completions one /completion request may ask for (prompts x `n_cmpl`): they run in turns, this bounds how long. */
const maxCompletions = 256;

/** What to complete: a prompt, and for fill in the middle the text after the gap and other files. */
interface CompletionInput {
  prompt: Prompt;
  suffix?: string;
  files?: { name?: string; text: string }[];
}

/** Runs /completion and /infill alike: one result (or a list, for several prompts or `n_cmpl`), or their stream. */
async function complete(engine: EngineFacade, run: Omit<CompletionRun, "info">, inputs: CompletionInput[], signal: AbortSignal) {
  const { body, options, perPrompt: n } = run;
  const lineRules = (body.n_indent ?? 0) > 0 || (body.t_max_predict_ms ?? 0) > 0;
  const runs = inputs.flatMap((input): { generation: Generation; limits?: LineLimits }[] => {
    const request = { ...options, ...input, raw: true };
    if (!lineRules)
      return (n === 1 ? [engine.complete(request)] : engine.completeChoices(request, n)).map((generation) => ({ generation }));
    // Each generation gets its own stop switch: a rule ends only that one. With a seed, each its own, as choices get.
    return Array.from({ length: n }, (_, index) => {
      const halt = new AbortController();
      const seed = request.seed === undefined ? undefined : request.seed + index;
      const generation = engine.complete({ ...request, seed, signal: AbortSignal.any([signal, halt.signal]) });
      return { generation, limits: new LineLimits(body.n_indent ?? 0, body.t_max_predict_ms ?? 0, () => halt.abort()) };
    });
  });
  const model = runs[0]!.generation.model;
  const info = await engine.findModel(model);
  if (!info) throw new LlamaportError("not_found", `model "${model}" not found`, { param: "model" });
  const full: CompletionRun = { ...run, info };
  // Several prompts take turns on the model's sequences, as llama-server queues a request's tasks.
  const turns = takeTurns(
    runs.map((one) => one.generation),
    info.parallel,
    signal,
  );
  for (const [index, one] of runs.entries()) one.generation = turns[index]!;
  if (!body.stream) {
    const results = await Promise.all(
      runs.map(({ generation, limits }, index) =>
        outcomeOf(generation, limits).then((outcome) => finalResult(full, index, outcome, false)),
      ),
    );
    return results.length === 1 ? results[0] : results;
  }
  const generations = runs.map(({ generation, limits }) => (limits ? limitedGeneration(generation, limits) : generation));
  const format = (index: number) => streamFormat(full, index, runs[index]!.limits);
  if (generations.length === 1) return sse(frames(generations[0]!, format(0)));
  return sse(choiceFrames(generations, format, () => []));
}

/** The text of a prompt, token ids written as their pieces (the `prompt` field of a result). */
async function promptText(engine: EngineFacade, model: string, prompt: Prompt): Promise<string> {
  if (typeof prompt === "string") return prompt;
  const ids = prompt.filter((part): part is number => typeof part === "number");
  const pieces = ids.length ? await engine.tokenPieces(model, ids) : [];
  let next = 0;
  return prompt.map((part) => (typeof part === "string" ? part : utf8(pieces[next++]!.bytes))).join("");
}

const decoder = new TextDecoder();
const utf8 = (bytes: number[]) => decoder.decode(new Uint8Array(bytes));
/** Texts one /tokenize `content` list may hold (token ids besides them are not counted). */
const maxTokenizeTexts = 1024;

/** A token's piece as /tokenize shows it: its text when its bytes are whole UTF-8, else the bytes. */
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
function pieceOf(bytes: number[]): string | number[] {
  try {
    return strictDecoder.decode(new Uint8Array(bytes));
  } catch {
    return bytes;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Chat messages, /embedding, /props, /slots

/**
 * The prompt a /chat/completions request with these messages and tools evaluates, read as that route (the OpenAI
 * plugin's) reads them: text or text parts (other parts are a 400, models read text only), assistant `tool_calls`
 * with JSON-string arguments, `tool` messages answering them by `tool_call_id`, and function tools.
 */
function chatPrompt(engine: EngineFacade, body: MessagesBody) {
  const choice = body.tool_choice;
  return engine.chatPrompt({
    model: modelOf(body.model, engine),
    messages: body.messages.map(chatMessage),
    tools: body.tools?.map(({ type, function: f }, i) => {
      if (type !== "function")
        throw new LlamaportError("invalid_request", `tools[${i}].type: tool type "${type}" is not supported; only function tools are`, {
          param: `tools[${i}].type`,
        });
      if (!f) throw new LlamaportError("invalid_request", `tools[${i}].function: required`, { param: `tools[${i}].function` });
      return { name: f.name, description: f.description, parameters: f.parameters };
    }),
    toolChoice: typeof choice === "object" ? { name: choice.function.name } : choice,
  });
}

function chatMessage({ role, content, tool_calls, tool_call_id }: MessagesBody["messages"][number], index: number): ChatMessage {
  if (content === undefined && !(role === "assistant" && tool_calls?.length))
    throw new LlamaportError(
      "invalid_request",
      `messages[${index}].content: required (only an assistant message with tool_calls may leave it out)`,
      {
        param: "messages",
      },
    );
  const at = `messages[${index}].content`;
  const text =
    typeof content === "string" || content == null
      ? (content ?? "")
      : content
          .map((part, i) => {
            const { type, text } = (part ?? {}) as { type?: unknown; text?: unknown };
            if (type === "text" && typeof text === "string") return text;
            throw new LlamaportError(
              "invalid_request",
              `${at}[${i}] must be a {"type": "text", "text": ...} part: llamaport's models read text only`,
              {
                param: "messages",
              },
            );
          })
          .join("");
  if (role === "tool") return { role, content: text, toolCallId: tool_call_id };
  if (role !== "assistant") return { role: role === "developer" ? "system" : role, content: text };
  const toolCalls = tool_calls?.map((call, j) => ({
    id: call.id,
    name: call.function.name,
    arguments: argumentsObject(call.function.arguments, `messages[${index}].tool_calls[${j}].function.arguments`),
  }));
  return { role, content: text, toolCalls };
}

/** A call's arguments: a JSON object in a string (empty: none). */
function argumentsObject(text: string, field: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text || "{}");
  } catch {
    value = undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new LlamaportError("invalid_request", `${field}: expected a JSON object in a string, got ${JSON.stringify(text.slice(0, 40))}`, {
      param: field,
    });
  return value as Record<string, unknown>;
}

/** llama-server's `embd_normalize`: -1 none, 0 max absolute (to the int16 range), 1 taxicab, 2 Euclidean, p > 2 p-norm. */
function normalized(vector: number[], p: number): number[] {
  if (p === -1) return vector;
  let sum = 0;
  if (p === 0) {
    for (const x of vector) sum = Math.max(sum, Math.abs(x));
    sum /= 32760;
  } else {
    for (const x of vector) sum += Math.abs(x) ** p;
    sum **= 1 / p;
  }
  const scale = sum > 0 ? 1 / sum : 0;
  return vector.map((x) => Math.fround(x * scale));
}

/** Embedding inputs: a text, several texts, token ids, or lists of them (texts and ids mixed in one input are not supported). */
function embeddingInputs(value: string | unknown[]): (string | number[])[] {
  const one = (item: unknown, at: string): string | number[] => {
    if (typeof item === "string") return item;
    if (Array.isArray(item) && item.every((x) => Number.isInteger(x) && x >= 0)) return item as number[];
    throw new LlamaportError("invalid_request", `${at} must be a text or a list of token ids`, { param: "input" });
  };
  if (typeof value === "string") return [value];
  if (value.some((item) => typeof item === "number")) return [one(value, "content")];
  return value.map((item, index) => one(item, `content[${index}]`));
}

/** The model `/props` and `/slots` describe: `?model=`, else the default one. */
async function describedModel(engine: EngineFacade, query: Record<string, string | undefined>): Promise<ModelInfo> {
  const name = modelOf(query.model, engine);
  const info = await engine.findModel(name);
  if (!info) throw new LlamaportError("not_found", `model "${name}" not found`, { param: "model" });
  return info;
}

function props(info: ModelInfo, server: ServerInfo) {
  return {
    default_generation_settings: {
      params: settingsOf({}, info.defaults, { stream: true, nProbs: 0, postSampling: false }),
      n_ctx: info.context,
    },
    total_slots: info.parallel,
    model_alias: info.name,
    model_ftype: info.facts?.quantization ?? "",
    // The file's name only: where it lives is not the client's business.
    model_path: info.file?.split(/[\\/]/).pop() ?? "",
    modalities: { vision: false, video: false, audio: false },
    endpoint_slots: true,
    endpoint_props: false,
    endpoint_metrics: false,
    chat_template: info.chatTemplate ?? "",
    chat_template_caps: {},
    build_info: server.buildInfo,
    is_sleeping: false,
  };
}

/** `/slots`: each of the model's sequences; all idle and empty while the model is not loaded. */
function slots(engine: EngineFacade, info: ModelInfo) {
  const loaded = engine.loadedModels().find((m) => m.name === info.name);
  const sequences =
    loaded?.sequences ??
    Array.from({ length: info.parallel }, (_, id) => ({ id, busy: false, contextSize: info.context, cachedTokens: 0 }));
  return sequences.map((sequence) => ({
    id: sequence.id,
    n_ctx: sequence.contextSize,
    speculative: false,
    is_processing: sequence.busy,
    tokens_cached: sequence.cachedTokens,
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers

async function completionHandler({
  body,
  engine,
  signal,
}: {
  body: StaticDecode<typeof completionBody>;
  engine: EngineFacade;
  signal: AbortSignal;
}) {
  refuseFields(body);
  const model = modelOf(body.model, engine);
  const prompts = promptsOf(body.prompt);
  const perPrompt = body.n_cmpl ?? body.n ?? 1;
  if (prompts.length * perPrompt > maxCompletions)
    throw new LlamaportError(
      "invalid_request",
      `prompt: at most ${maxCompletions} completions per request (prompts x n_cmpl), got ${prompts.length} x ${perPrompt}`,
      { param: "prompt" },
    );
  const promptTexts = await Promise.all(prompts.map((prompt) => promptText(engine, model, prompt)));
  const run = { body, options: optionsOf(body, model, signal), promptTexts, perPrompt };
  return complete(
    engine,
    run,
    prompts.map((prompt) => ({ prompt })),
    signal,
  );
}

async function infillHandler({
  body,
  engine,
  signal,
}: {
  body: StaticDecode<typeof infillBody>;
  engine: EngineFacade;
  signal: AbortSignal;
}) {
  refuseFields(body);
  const model = modelOf(body.model, engine);
  // The GGUF's facts say whether it can fill in the middle; a model not yet written or downloaded is loaded first.
  let info = await engine.findModel(model);
  if (info && !info.facts) {
    await engine.load(model);
    info = await engine.findModel(model);
  }
  if (info?.facts && !info.facts.infill)
    throw new LlamaportError(
      "not_supported",
      `Infill is not supported by this model: model "${info.name}" has no fill-in-the-middle prefix, suffix and middle tokens`,
    );
  // llama-server puts `prompt` right after the prefix, before the suffix marker: the text typed so far on the line.
  const prefix = body.input_prefix + (body.prompt ?? "");
  const files = (body.input_extra ?? []).map((chunk) => ({ name: chunk.filename, text: chunk.text }));
  const run = { body, options: optionsOf(body, model, signal), promptTexts: [prefix], perPrompt: body.n_cmpl ?? body.n ?? 1 };
  return complete(engine, run, [{ prompt: prefix, suffix: body.input_suffix, files }], signal);
}

export default definePlugin({
  name: "llamacpp",
  version: "1.0.0",
  fields,
  error: errorBody,
  routes: [
    route({ method: "POST", path: "/completion", body: completionBody, handler: completionHandler }),
    route({ method: "POST", path: "/completions", body: completionBody, handler: completionHandler }),
    route({
      method: "POST",
      path: "/infill",
      body: infillBody,
      fields: { suffix: "input_suffix", prompt: "input_prefix" },
      handler: infillHandler,
    }),
    route({
      method: "POST",
      path: "/tokenize",
      body: tokenizeBody,
      async handler({ body, engine }) {
        const model = modelOf(body.model, engine);
        const parts = typeof body.content === "string" ? [body.content] : (body.content ?? []);
        let texts = 0;
        for (const part of parts) if (typeof part === "string") texts++;
        // Each text is its own engine call: a list of 100,000 one-letter texts would hold the event loop.
        if (texts > maxTokenizeTexts)
          throw new LlamaportError("invalid_request", `content: at most ${maxTokenizeTexts} texts among its parts, got ${texts}`, {
            param: "content",
          });
        const tokens: number[] = [];
        for (const [index, part] of parts.entries()) {
          if (typeof part === "number") tokens.push(part);
          else {
            const options = { specialTokens: body.parse_special !== false, bos: index === 0 && body.add_special === true };
            for (const token of await engine.tokenize(model, part, options)) tokens.push(token);
          }
        }
        if (!body.with_pieces) return { tokens };
        const pieces = await engine.tokenPieces(model, tokens);
        return { tokens: pieces.map((piece) => ({ id: piece.id, piece: pieceOf(piece.bytes) })) };
      },
    }),
    route({
      method: "POST",
      path: "/detokenize",
      body: detokenizeBody,
      async handler({ body, engine }) {
        const model = modelOf(body.model, engine);
        // The pieces joined, as llama-server's tokens_to_str: special tokens written out, leading spaces kept.
        const pieces = body.tokens?.length ? await engine.tokenPieces(model, body.tokens) : [];
        return { content: utf8(pieces.flatMap((piece) => piece.bytes)) };
      },
    }),
    route({
      method: "POST",
      path: "/apply-template",
      body: messagesBody,
      async handler({ body, engine }) {
        return { prompt: (await chatPrompt(engine, body)).text };
      },
    }),
    route({
      method: "POST",
      path: "/chat/completions/input_tokens",
      body: messagesBody,
      async handler({ body, engine }) {
        const { tokens } = await chatPrompt(engine, body);
        return { input_tokens: tokens.length, object: "response.input_tokens" };
      },
    }),
    ...(["/embedding", "/embeddings"] as const).map((path) =>
      route({
        method: "POST",
        path,
        body: embeddingBody,
        async handler({ body, engine, signal }) {
          const value = body.input ?? body.content;
          if (value === undefined) throw new LlamaportError("invalid_request", '"input" or "content" must be provided', { param: "input" });
          const input = embeddingInputs(value);
          const result = await engine.embed({ model: modelOf(body.model, engine), input, normalize: false, signal });
          // One entry per input; pooled models give one vector each, in a list as llama-server's (per-token) shape has it.
          return result.embeddings.map((vector, index) => ({ index, embedding: [normalized(vector, body.embd_normalize ?? 2)] }));
        },
      }),
    ),
    {
      method: "GET",
      path: "/props",
      handler: async ({ engine, query, server }) => props(await describedModel(engine, query), server),
    },
    {
      method: "GET",
      path: "/slots",
      handler: async ({ engine, query }) => {
        const list = slots(engine, await describedModel(engine, query));
        if (query.fail_on_no_slot && !list.some((slot) => !slot.is_processing))
          throw new LlamaportError("unavailable", "no slot available");
        return list;
      },
    },
    // llama-server serves these without the /v1 prefix too, answering exactly as its OpenAI routes.
    { method: "POST", path: "/chat/completions", sameAs: "/v1/chat/completions" },
    { method: "GET", path: "/models", sameAs: "/v1/models" },
  ],
});
