/** OpenAI protocol: /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models over the llamaport engine. */
import {
  type ChatMessage,
  type ChatRequest,
  choiceFrames,
  definePlugin,
  type DryPenalty,
  type EngineFacade,
  type FieldTable,
  frames,
  type GeneratedToken,
  type GenerateOptions,
  type Generation,
  type GenerationSummary,
  LlamaportError,
  nullable,
  type Problem,
  randomId,
  type ServerInfo,
  readFields,
  route,
  type StaticDecode,
  type StreamFormat,
  slot,
  sse,
  sseEvent,
  t,
  takeTurns,
  TEXT,
  type TokenBiasEntry,
  type ToolCall,
  type UnfinishedToolCall,
  template,
} from "llamaport";

// Content parts are checked by `textOf`, not by the schema: TypeBox would only say "expected union value", while a
// client needs to hear which part it sent that we cannot take.
const toolCall = t.Object({
  id: t.String(),
  type: t.Optional(t.Literal("function")),
  function: t.Object({ name: t.String(), arguments: t.String() }),
});
const message = t.Object({
  role: t.Union([t.Literal("system"), t.Literal("developer"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
  // Optional: an assistant message that only calls tools may leave it out (checked in `chatMessage`).
  content: t.Optional(t.Union([t.String(), t.Array(t.Unknown()), t.Null()])),
  name: t.Optional(t.String()),
  tool_calls: nullable(t.Array(toolCall)),
  tool_call_id: t.Optional(t.String()),
});

/** Function tools; other types (`custom`) are refused by `chatRequest`, naming `tools[i].type`. */
const tool = t.Object({
  type: t.String(),
  function: t.Optional(
    t.Object({
      name: t.String(),
      description: t.Optional(t.String()),
      parameters: t.Optional(t.Record(t.String(), t.Unknown())),
      // Calls always match the schema's shape (see README): strict or not, the grammar is the same.
      strict: nullable(t.Boolean()),
    }),
  ),
});
const toolChoice = t.Union([
  t.Literal("auto"),
  t.Literal("none"),
  t.Literal("required"),
  t.Object({ type: t.Literal("function"), function: t.Object({ name: t.String() }) }),
]);

/** A JSON Schema, as clients send it. */
const schemaObject = t.Record(t.String(), t.Unknown());

/** Fields shared by chat and legacy completions; after OpenAI's own come llama-server's (top_k, grammar, dry_*, ...). */
const samplingFields = {
  // Absent or null: models.yaml's default_model (or the only model), as llama-server serves one model to any request.
  model: nullable(t.String({ minLength: 1 })),
  stream: nullable(t.Boolean()),
  stream_options: nullable(t.Object({ include_usage: t.Optional(t.Boolean()) })),
  max_tokens: nullable(t.Integer({ minimum: 1 })),
  temperature: nullable(t.Number({ minimum: 0, maximum: 2 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  seed: nullable(t.Integer()),
  stop: nullable(t.Union([t.String(), t.Array(t.String(), { maxItems: 16 })])),
  presence_penalty: nullable(t.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: nullable(t.Number({ minimum: -2, maximum: 2 })),
  // Values are checked by `tokenBiasOf`: a union inside a record would only be reported as "must be an object".
  logit_bias: nullable(t.Record(t.String(), t.Unknown())),
  n: nullable(t.Integer({ minimum: 1, maximum: 128 })),
  response_format: nullable(
    t.Object({
      type: t.Union([t.Literal("text"), t.Literal("json_object"), t.Literal("json_schema")]),
      json_schema: t.Optional(t.Object({ name: t.Optional(t.String()), schema: t.Optional(schemaObject) })),
      // llama-server: a schema on json_object.
      schema: t.Optional(schemaObject),
    }),
  ),
  // llama-server's extensions.
  top_k: nullable(t.Integer({ minimum: 0 })),
  min_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  repeat_penalty: nullable(t.Number({ exclusiveMinimum: 0 })),
  repeat_last_n: nullable(t.Integer({ minimum: -1 })),
  ignore_eos: nullable(t.Boolean()),
  grammar: nullable(t.String({ minLength: 1 })),
  json_schema: nullable(schemaObject),
  n_probs: nullable(t.Integer({ minimum: 0, maximum: 20 })),
  cache_prompt: nullable(t.Boolean()),
  dry_multiplier: nullable(t.Number({ minimum: 0 })),
  dry_base: nullable(t.Number({ minimum: 1 })),
  dry_allowed_length: nullable(t.Integer({ minimum: 1 })),
  dry_penalty_last_n: nullable(t.Integer({ minimum: -1 })),
  dry_sequence_breakers: nullable(t.Array(t.String())),
  xtc_probability: nullable(t.Number({ minimum: 0, maximum: 1 })),
  xtc_threshold: nullable(t.Number({ minimum: 0, maximum: 1 })),
};
const samplingBody = t.Object(samplingFields);
type SamplingBody = StaticDecode<typeof samplingBody>;

const chatBody = t.Object({
  ...samplingFields,
  messages: t.Array(message, { minItems: 1 }),
  max_completion_tokens: nullable(t.Integer({ minimum: 1 })),
  logprobs: nullable(t.Boolean()),
  top_logprobs: nullable(t.Integer({ minimum: 0, maximum: 20 })),
  modalities: nullable(t.Array(t.String())),
  audio: nullable(t.Unknown()),
  web_search_options: nullable(t.Unknown()),
  tools: nullable(t.Array(tool)),
  tool_choice: nullable(toolChoice),
  parallel_tool_calls: nullable(t.Boolean()),
  // The deprecated function-calling fields: refused by name rather than ignored.
  functions: t.Optional(t.Unknown()),
  function_call: t.Optional(t.Unknown()),
});
type ChatBody = StaticDecode<typeof chatBody>;

const tokenList = t.Array(t.Integer({ minimum: 0 }), { minItems: 1 });
const completionBody = t.Object({
  ...samplingFields,
  prompt: t.Union([
    t.String(),
    t.Array(t.String(), { minItems: 1, maxItems: 64 }),
    tokenList,
    t.Array(tokenList, { minItems: 1, maxItems: 64 }),
  ]),
  // 0 with echo: only the prompt, scored (llama-server: evaluated only).
  max_tokens: nullable(t.Integer({ minimum: 0 })),
  logprobs: nullable(t.Integer({ minimum: 0, maximum: 20 })),
  echo: nullable(t.Boolean()),
  suffix: nullable(t.String()),
  best_of: nullable(t.Integer({ minimum: 1, maximum: 128 })),
});

const embeddingsBody = t.Object({
  model: nullable(t.String({ minLength: 1 })),
  input: t.Union([t.String(), t.Array(t.String(), { minItems: 1 }), tokenList, t.Array(tokenList, { minItems: 1 })]),
  encoding_format: nullable(t.Union([t.Literal("float"), t.Literal("base64")])),
  dimensions: nullable(t.Integer({ minimum: 1 })),
});

/** Options read as they are: engine option name → this protocol's field. */
const directFields: FieldTable = {
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  seed: "seed",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  repeatPenalty: "repeat_penalty",
  repeatLastN: "repeat_last_n",
  ignoreEos: "ignore_eos",
  grammar: "grammar",
  reusePrompt: "cache_prompt",
};

/** Engine option names to this protocol's fields, for naming fields in errors. */
const fields: FieldTable = {
  ...directFields,
  maxTokens: "max_tokens",
  stop: "stop",
  format: "response_format",
  tokenBias: "logit_bias",
  dry: "dry_multiplier",
  xtc: "xtc_probability",
  choices: "n",
  prompt: "prompt",
  suffix: "suffix",
  input: "input",
  dimensions: "dimensions",
  toolChoice: "tool_choice",
  parallelToolCalls: "parallel_tool_calls",
  "tools[].name": "tools[].function.name",
  "tools[].parameters": "tools[].function.parameters",
};

/** The model a request names, else the registry's default model; a 400 when there is neither. */
function modelOf(body: { model?: string }, engine: EngineFacade): string {
  const model = body.model ?? engine.defaultModel();
  if (model === undefined)
    throw new LlamaportError("invalid_request", "model is required: models.yaml has several models and no default_model", {
      param: "model",
    });
  return model;
}

function generateOptions(body: SamplingBody & { max_completion_tokens?: number }, model: string, signal: AbortSignal): GenerateOptions {
  return {
    ...readFields(body, directFields),
    model,
    maxTokens: body.max_completion_tokens ?? body.max_tokens,
    stop: typeof body.stop === "string" ? [body.stop] : body.stop,
    format: formatOf(body),
    tokenBias: body.logit_bias && tokenBiasOf(body.logit_bias),
    dry: dryOf(body),
    xtc: body.xtc_probability === undefined ? undefined : { probability: body.xtc_probability, threshold: body.xtc_threshold ?? 0.1 },
    logprobs: body.n_probs || undefined,
    signal,
  };
}

/** `response_format` (OpenAI's, or llama-server's json_object with a schema) or llama-server's top-level `json_schema`. */
function formatOf(body: SamplingBody): GenerateOptions["format"] {
  const format = body.response_format;
  if (format?.type === "json_schema") return format.json_schema?.schema ?? "json";
  if (format?.type === "json_object") return format.schema ?? "json";
  return body.json_schema;
}

/** OpenAI's `logit_bias`: token id → bias; -100 bans (OpenAI's meaning), llama-server's `false` too; other keys are texts. */
function tokenBiasOf(bias: Record<string, unknown>): TokenBiasEntry[] {
  return Object.entries(bias).map(([key, value]) => {
    if (value !== false && (typeof value !== "number" || !(value >= -100 && value <= 100)))
      throw new LlamaportError(
        "invalid_request",
        `logit_bias["${key}"] must be a number between -100 and 100 (or false), got ${JSON.stringify(value)}`,
        { param: "logit_bias" },
      );
    return { token: /^\d+$/.test(key) ? Number(key) : key, bias: value === false || value <= -100 ? "never" : value };
  });
}

function dryOf(body: SamplingBody): DryPenalty | undefined {
  if (!body.dry_multiplier) return undefined;
  return {
    multiplier: body.dry_multiplier,
    base: body.dry_base,
    allowedLength: body.dry_allowed_length,
    lastN: body.dry_penalty_last_n,
    sequenceBreakers: body.dry_sequence_breakers,
  };
}

/** Text of a message's content; a part that is not text is a 400 naming it (this server's models read text only). */
function textOf(content: string | unknown[] | null, at: string): string {
  if (content === null) return "";
  if (typeof content === "string") return content;
  return content
    .map((part, index) => {
      const { type, text } = (part ?? {}) as { type?: unknown; text?: unknown };
      const field = `${at}[${index}]`;
      if (type === "text" && typeof text === "string") return text;
      if (type === "text") throw new LlamaportError("invalid_request", `${field}.text must be a string`, { param: `${field}.text` });
      throw new LlamaportError(
        "invalid_request",
        `${field}.type ${JSON.stringify(type)} is not supported: llamaport's models read text only, so only "text" parts are accepted (an image or audio part would be dropped)`,
        { param: `${field}.type` },
      );
    })
    .join("");
}

/** The chat body's messages, tools and tool choice as an engine request (the sampling options come separately). */
function chatRequest(body: ChatBody): Pick<ChatRequest, "messages" | "tools" | "toolChoice" | "parallelToolCalls"> {
  for (const legacy of ["functions", "function_call"] as const)
    if (body[legacy] !== undefined)
      throw new LlamaportError(
        "invalid_request",
        `${legacy} is the deprecated form of tools / tool_choice, which are supported: use those`,
        {
          param: legacy,
        },
      );
  const choice = body.tool_choice;
  return {
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
    parallelToolCalls: body.parallel_tool_calls,
  };
}

/** A message with its tool calls (arguments: a JSON object in a string) or, from a `tool` message, a call's result. */
function chatMessage(m: ChatBody["messages"][number], i: number): ChatMessage {
  if (m.content === undefined && !(m.role === "assistant" && m.tool_calls?.length))
    throw new LlamaportError(
      "invalid_request",
      `messages[${i}].content: required (only an assistant message with tool_calls may leave it out)`,
      {
        param: `messages[${i}].content`,
      },
    );
  const content = textOf(m.content ?? null, `messages[${i}].content`);
  if (m.role === "tool") return { role: "tool", content, toolCallId: m.tool_call_id };
  if (m.role !== "assistant") return { role: m.role === "developer" ? "system" : m.role, content };
  const toolCalls = m.tool_calls?.map(
    (call, j): ToolCall => ({
      id: call.id,
      name: call.function.name,
      arguments: jsonObject(call.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`),
    }),
  );
  return { role: "assistant", content, toolCalls };
}

function jsonObject(text: string, field: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text || "{}");
  } catch {
    throw new LlamaportError("invalid_request", `${field}: expected a JSON object in a string, got ${JSON.stringify(text.slice(0, 40))}`, {
      param: field,
    });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new LlamaportError("invalid_request", `${field}: expected a JSON object`, { param: field });
  return value as Record<string, unknown>;
}

function wireToolCall(call: ToolCall) {
  return { id: call.id, type: "function", function: { name: call.name, arguments: JSON.stringify(call.arguments) } };
}

/**
 * A whole answer's message. A call cut short by max_tokens is listed with its arguments as far as they came (as
 * OpenAI does, and as the stream sent them), so the answer shows what the tokens were spent on.
 */
function answerMessage(text: string, toolCalls: ToolCall[], unfinished: UnfinishedToolCall | undefined) {
  const calls = toolCalls.map(wireToolCall);
  if (unfinished)
    calls.push({ id: unfinished.id, type: "function", function: { name: unfinished.name, arguments: unfinished.argumentsJson } });
  if (calls.length === 0) return { role: "assistant", content: text, refusal: null };
  return { role: "assistant", content: text || null, tool_calls: calls, refusal: null };
}

/** Chat fields whose output llamaport cannot produce: a 400 rather than a reply without it. */
function refuseChatFields(body: ChatBody): void {
  if (body.modalities?.some((m) => m !== "text") || body.audio !== undefined)
    throw new LlamaportError("invalid_request", "modalities: only text output is supported (no audio)", { param: "modalities" });
  if (body.web_search_options !== undefined)
    throw new LlamaportError("invalid_request", "web_search_options is not supported: llamaport does not search the web", {
      param: "web_search_options",
    });
  if (body.top_logprobs !== undefined && body.logprobs !== true)
    throw new LlamaportError("invalid_request", "top_logprobs needs logprobs: true", { param: "top_logprobs" });
}

function usage(summary: Pick<GenerationSummary, "promptTokens" | "completionTokens" | "cachedTokens">) {
  return {
    prompt_tokens: summary.promptTokens,
    completion_tokens: summary.completionTokens,
    total_tokens: summary.promptTokens + summary.completionTokens,
    prompt_tokens_details: { cached_tokens: summary.cachedTokens },
  };
}

/** Usage of several choices: each prompt counted once (n choices of one prompt share it), completions summed. */
function usageOf(summaries: GenerationSummary[], choicesPerPrompt: number) {
  const total = (pick: (s: GenerationSummary) => number, every = 1) =>
    summaries.reduce((sum, summary, index) => sum + (index % every === 0 ? pick(summary) : 0), 0);
  return usage({
    promptTokens: total((s) => s.promptTokens, choicesPerPrompt),
    cachedTokens: total((s) => s.cachedTokens, choicesPerPrompt),
    completionTokens: total((s) => s.completionTokens),
  });
}

const finishReasons: Record<GenerationSummary["finishReason"], string> = {
  stop: "stop",
  length: "length",
  toolCalls: "tool_calls",
  abort: "stop",
};
const finishReason = (summary: GenerationSummary) => finishReasons[summary.finishReason];
/** The stream's last event, as the seed API shows it. */
const doneEvent = sseEvent("done", "[DONE]");

/** The fields every response and chunk of one request shares; the fingerprint is the build id, as llama-server sends it. */
function envelope(object: string, id: string, model: string, server: ServerInfo) {
  return { id, object, created: Math.floor(Date.now() / 1000), model, system_fingerprint: server.buildInfo };
}

/** A token as OpenAI's chat logprobs show it. */
function chatLogprob(token: GeneratedToken) {
  return {
    token: token.text,
    logprob: token.logprob ?? 0,
    bytes: token.bytes,
    top_logprobs: (token.top ?? []).map((alt) => ({ token: alt.text, logprob: alt.logprob, bytes: alt.bytes })),
  };
}

const chatLogprobs = (tokens: readonly GeneratedToken[] | undefined) => ({ content: (tokens ?? []).map(chatLogprob), refusal: null });

/**
 * The legacy completions' logprobs: parallel lists, `top_logprobs` maps of text → logprob holding the sampled token
 * too ("up to logprobs + 1 elements"), `text_offset` counted from the start of the choice's text. With `echo`, the
 * prompt's tokens come first; the first has no log probability (null), as OpenAI answers it.
 */
class LegacyLogprobs {
  private offset = 0;

  of(tokens: readonly GeneratedToken[] | undefined) {
    const list = tokens ?? [];
    const offsets = list.map((token) => {
      const at = this.offset;
      this.offset += token.text.length;
      return at;
    });
    return {
      tokens: list.map((t) => t.text),
      token_logprobs: list.map((t) => t.logprob ?? null),
      top_logprobs: list.map((t) => {
        if (t.logprob === undefined) return null;
        const top: Record<string, number> = {};
        for (const alt of t.top ?? []) top[alt.text] ??= alt.logprob;
        top[t.text] ??= t.logprob;
        return top;
      }),
      text_offset: offsets,
    };
  }

  /**
   * The scored prompt's tokens, placed in the echoed prompt `text`; the generated ones then start after it. A token's
   * own piece keeps the space SentencePiece puts before the first word (" Once"), which the prompt's text does not
   * have: offsets are counted back from the end of the text (where the pieces agree with it), never below 0.
   */
  ofPrompt(tokens: readonly GeneratedToken[], text: string) {
    const lists = this.of(tokens);
    let end = text.length;
    for (let i = tokens.length - 1; i >= 0; i--) {
      end -= tokens[i]!.text.length;
      lists.text_offset[i] = Math.max(0, end);
    }
    this.offset = text.length;
    return lists;
  }

  /** Where the generated text starts: after the echoed prompt's text. */
  skip(text: string): this {
    this.offset = text.length;
    return this;
  }

  /** Both lists in one: the prompt's, then the generated tokens'. */
  static join(a: ReturnType<LegacyLogprobs["of"]>, b: ReturnType<LegacyLogprobs["of"]>) {
    return {
      tokens: [...a.tokens, ...b.tokens],
      token_logprobs: [...a.token_logprobs, ...b.token_logprobs],
      top_logprobs: [...a.top_logprobs, ...b.top_logprobs],
      text_offset: [...a.text_offset, ...b.text_offset],
    };
  }
}

/** Every model once, with its aliases as an extra field: listing aliases as models would show duplicates. */
async function modelList(engine: EngineFacade) {
  return (await engine.listModels()).map((model) => ({
    id: model.name,
    object: "model",
    created: Math.floor(Date.parse(model.modifiedAt) / 1000),
    owned_by: "llamaport",
    aliases: model.aliases,
  }));
}

/** The generations of one request: `n` choices of each prompt, run side by side. */
function choicesOf<R extends GenerateOptions>(n: number, request: R, one: (r: R) => Generation, many: (r: R, n: number) => Generation[]) {
  return n === 1 ? [one(request)] : many(request, n);
}

/** Completions one /v1/completions request may ask for (prompts x n): they take turns on the model's sequences. */
const maxCompletions = 2048;

/** OpenAI's `error.code` for the problems its clients check for by code. */
const errorCodes: Partial<Record<Problem["code"], string>> = {
  unauthorized: "invalid_api_key",
  not_found: "model_not_found",
  context_exceeded: "context_length_exceeded",
  busy: "server_busy",
};

const encodeBase64 = (vector: number[]) => Buffer.from(new Float32Array(vector).buffer).toString("base64");

export default definePlugin({
  name: "openai",
  version: "1.2.0",
  prefixes: ["/v1"],
  fields,
  error: (problem) => ({
    error: {
      message: problem.message,
      type: problem.status >= 500 ? "server_error" : "invalid_request_error",
      param: problem.param ?? null,
      code: (problem.code === "not_found" && problem.param !== "model" ? null : errorCodes[problem.code]) ?? null,
    },
  }),
  routes: [
    route({
      method: "POST",
      path: "/v1/chat/completions",
      body: chatBody,
      fields: { logprobs: "top_logprobs" },
      async handler({ body, engine, signal, server }) {
        refuseChatFields(body);
        const request = {
          ...generateOptions(body, modelOf(body, engine), signal),
          ...chatRequest(body),
          ...(body.logprobs ? { logprobs: body.top_logprobs ?? 0 } : {}),
        };
        const withLogprobs = request.logprobs !== undefined;
        const generations = choicesOf(
          body.n ?? 1,
          request,
          (r) => engine.chat(r),
          (r, n) => engine.chatChoices(r, n),
        );
        const base = envelope(
          body.stream ? "chat.completion.chunk" : "chat.completion",
          randomId("chatcmpl-"),
          generations[0]!.model,
          server,
        );
        if (!body.stream) {
          const results = await Promise.all(generations.map((g) => g.collect()));
          return {
            ...base,
            choices: results.map(({ text, toolCalls, tokens, summary }, index) => ({
              index,
              message: answerMessage(text, toolCalls, summary.unfinishedToolCall),
              logprobs: withLogprobs ? chatLogprobs(tokens) : null,
              finish_reason: finishReason(summary),
            })),
            usage: usageOf(
              results.map((r) => r.summary),
              results.length,
            ),
          };
        }
        const includeUsage = body.stream_options?.include_usage === true;
        const chunk = (index: number, delta: object, logprobs: unknown = null, finish: string | null = null) => ({
          ...base,
          ...(includeUsage ? { usage: null } : {}),
          choices: [{ index, delta, logprobs, finish_reason: finish }],
        });
        const format = (index: number): StreamFormat => ({
          start: () => [chunk(index, { role: "assistant", content: "" })],
          text: template(chunk(index, { content: TEXT }, withLogprobs ? slot((delta) => chatLogprobs(delta.tokens)) : null)),
          // As OpenAI streams calls: id, type and name first, then the arguments in pieces.
          toolCallStart: (call) => [
            chunk(index, {
              tool_calls: [{ index: call.index, id: call.id, type: "function", function: { name: call.name, arguments: "" } }],
            }),
          ],
          toolCallArguments: (call) => template(chunk(index, { tool_calls: [{ index: call.index, function: { arguments: TEXT } }] })),
          done: (summary) => [chunk(index, {}, null, finishReason(summary))],
        });
        const end = (summaries: GenerationSummary[]) => [
          ...(includeUsage ? [{ ...base, choices: [], usage: usageOf(summaries, summaries.length) }] : []),
          doneEvent,
        ];
        if (generations.length > 1) return sse(choiceFrames(generations, format, end));
        const single = format(0);
        return sse(frames(generations[0]!, { ...single, done: (summary) => [...single.done(summary), ...end([summary])] }));
      },
    }),
    route({
      method: "POST",
      path: "/v1/completions",
      body: completionBody,
      async handler({ body, engine, signal, server }) {
        const prompts: (string | number[])[] =
          typeof body.prompt === "string"
            ? [body.prompt]
            : typeof body.prompt[0] === "number"
              ? [body.prompt as number[]]
              : (body.prompt as (string | number[])[]);
        const n = body.n ?? 1;
        if (prompts.length * n > maxCompletions)
          throw new LlamaportError(
            "invalid_request",
            `prompt: at most ${maxCompletions} completions per request (prompts x n), got ${prompts.length} x ${n}`,
            { param: "prompt" },
          );
        if (body.best_of !== undefined && body.best_of !== n)
          throw new LlamaportError("invalid_request", `best_of is not supported: it must equal n (${n}); each choice is returned`, {
            param: "best_of",
          });
        if (body.stream && prompts.length > 1)
          throw new LlamaportError(
            "not_supported",
            "streaming several prompts in one request is not supported; send one request per prompt",
            {
              param: "prompt",
            },
          );
        const model = modelOf(body, engine);
        const options = generateOptions(body, model, signal);
        const logprobs = body.logprobs ?? options.logprobs;
        // echo with logprobs scores the prompt too (what evaluation harnesses ask for, often with max_tokens 0).
        const scorePrompt = body.echo === true && logprobs !== undefined;
        const generations = prompts.flatMap((prompt) =>
          choicesOf(
            n,
            { ...options, logprobs, scorePrompt, prompt, raw: true, suffix: body.suffix },
            (r) => engine.complete(r),
            (r, count) => engine.completeChoices(r, count),
          ),
        );
        // echo: the prompt's text comes first (token-id prompts are detokenized).
        const echoes = body.echo
          ? await Promise.all(prompts.map((p) => (typeof p === "string" ? p : engine.detokenize(model, p))))
          : prompts.map(() => "");
        const echoOf = (index: number) => echoes[Math.floor(index / n)]!;
        const base = envelope("text_completion", randomId("cmpl-"), generations[0]!.model, server);
        const choice = (index: number, text: string, logprobs: unknown, finish: string | null) => ({
          index,
          text,
          logprobs,
          finish_reason: finish,
        });
        if (!body.stream) {
          // Several prompts take turns on the model's sequences instead of filling the queue other clients share.
          const parallel = (await engine.findModel(base.model))?.parallel ?? 1;
          const results = await Promise.all(takeTurns(generations, parallel, signal).map((g) => g.collect()));
          const logprobsOf = ({ prompt, tokens }: (typeof results)[number], index: number) => {
            if (logprobs === undefined) return null;
            const legacy = new LegacyLogprobs();
            if (!prompt) return legacy.skip(echoOf(index)).of(tokens);
            const scored = legacy.ofPrompt(prompt, echoOf(index));
            return LegacyLogprobs.join(scored, legacy.of(tokens));
          };
          return {
            ...base,
            choices: results.map((result, index) =>
              choice(index, echoOf(index) + result.text, logprobsOf(result, index), finishReason(result.summary)),
            ),
            usage: usageOf(
              results.map((r) => r.summary),
              n,
            ),
          };
        }
        const includeUsage = body.stream_options?.include_usage === true;
        const format = (index: number): StreamFormat => {
          const legacy = new LegacyLogprobs();
          const chunk = (text: unknown, logprobs: unknown, finish: string | null) => ({
            ...base,
            ...(includeUsage ? { usage: null } : {}),
            choices: [choice(index, text as string, logprobs, finish)],
          });
          const echo = echoOf(index);
          return {
            start: (start) => {
              const scored = start.prompt ? legacy.ofPrompt(start.prompt, echo) : null;
              legacy.skip(echo);
              return echo ? [chunk(echo, scored, null)] : [];
            },
            text: template(chunk(TEXT, logprobs === undefined ? null : slot((delta) => legacy.of(delta.tokens)), null)),
            done: (summary) => [chunk("", null, finishReason(summary))],
          };
        };
        const end = (summaries: GenerationSummary[]) => [
          ...(includeUsage ? [{ ...base, choices: [], usage: usageOf(summaries, n) }] : []),
          doneEvent,
        ];
        if (generations.length > 1) return sse(choiceFrames(generations, format, end));
        const single = format(0);
        return sse(frames(generations[0]!, { ...single, done: (summary) => [...single.done(summary), ...end([summary])] }));
      },
    }),
    route({
      method: "POST",
      path: "/v1/embeddings",
      body: embeddingsBody,
      async handler({ body, engine, signal }) {
        const input =
          typeof body.input === "string"
            ? [body.input]
            : typeof body.input[0] === "number"
              ? [body.input as number[]]
              : (body.input as (string | number[])[]);
        const result = await engine.embed({ model: modelOf(body, engine), input, dimensions: body.dimensions, signal });
        const base64 = body.encoding_format === "base64";
        return {
          object: "list",
          model: result.model,
          data: result.embeddings.map((embedding, index) => ({
            object: "embedding",
            index,
            embedding: base64 ? encodeBase64(embedding) : embedding,
          })),
          usage: { prompt_tokens: result.promptTokens, total_tokens: result.promptTokens },
        };
      },
    }),
    {
      method: "GET",
      path: "/v1/models",
      handler: async ({ engine }) => ({ object: "list", data: await modelList(engine) }),
    },
    {
      method: "GET",
      path: "/v1/models/:model",
      handler: async ({ engine, params }) => {
        const found = await engine.findModel(params.model ?? "");
        const model = found && (await modelList(engine)).find((m) => m.id === found.name);
        if (!model) throw new LlamaportError("not_found", `model "${params.model}" not found`, { param: "model" });
        return model;
      },
    },
  ],
});
