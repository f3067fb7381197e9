/** OpenAI protocol: /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models over the llamaport engine. */
import {
  definePlugin,
  type EngineFacade,
  type FieldTable,
  frames,
  type GenerateOptions,
  type GenerationSummary,
  LlamaportError,
  nullable,
  type Problem,
  randomId,
  readFields,
  route,
  type StaticDecode,
  sse,
  sseEvent,
  t,
  TEXT,
  template,
} from "llamaport";

const contentPart = t.Object({ type: t.String(), text: t.Optional(t.String()) });
const message = t.Object({
  role: t.Union([t.Literal("system"), t.Literal("developer"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
  content: t.Union([t.String(), t.Array(contentPart), t.Null()]),
  name: t.Optional(t.String()),
});

/** Fields shared by chat and legacy completions; extras are llama-server's names (top_k, min_p, ...). */
const samplingFields = {
  model: t.String({ minLength: 1 }),
  stream: nullable(t.Boolean()),
  stream_options: nullable(t.Object({ include_usage: t.Optional(t.Boolean()) })),
  max_tokens: nullable(t.Integer({ minimum: 1 })),
  temperature: nullable(t.Number({ minimum: 0, maximum: 2 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_k: nullable(t.Integer({ minimum: 0 })),
  min_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  seed: nullable(t.Integer()),
  stop: nullable(t.Union([t.String(), t.Array(t.String(), { maxItems: 16 })])),
  presence_penalty: nullable(t.Number({ minimum: -2, maximum: 2 })),
  frequency_penalty: nullable(t.Number({ minimum: -2, maximum: 2 })),
  repeat_penalty: nullable(t.Number({ exclusiveMinimum: 0 })),
  n: nullable(t.Integer({ minimum: 1, maximum: 1 })),
  ignore_eos: nullable(t.Boolean()),
  response_format: nullable(
    t.Object({
      type: t.Union([t.Literal("text"), t.Literal("json_object"), t.Literal("json_schema")]),
      json_schema: t.Optional(t.Object({ name: t.Optional(t.String()), schema: t.Optional(t.Record(t.String(), t.Unknown())) })),
    }),
  ),
};
const samplingBody = t.Object(samplingFields);
type SamplingBody = StaticDecode<typeof samplingBody>;

const chatBody = t.Object({
  ...samplingFields,
  messages: t.Array(message, { minItems: 1 }),
  max_completion_tokens: nullable(t.Integer({ minimum: 1 })),
});

const completionBody = t.Object({ ...samplingFields, prompt: t.Union([t.String(), t.Array(t.String(), { minItems: 1, maxItems: 64 })]) });

const embeddingsBody = t.Object({
  model: t.String({ minLength: 1 }),
  input: t.Union([t.String(), t.Array(t.String(), { minItems: 1 })]),
});

/** Engine option names to this protocol's fields, for reading requests and for naming fields in errors. */
const fields: FieldTable = {
  maxTokens: "max_tokens",
  temperature: "temperature",
  topP: "top_p",
  topK: "top_k",
  minP: "min_p",
  seed: "seed",
  stop: "stop",
  presencePenalty: "presence_penalty",
  frequencyPenalty: "frequency_penalty",
  repeatPenalty: "repeat_penalty",
  ignoreEos: "ignore_eos",
  format: "response_format",
};

function generateOptions(body: SamplingBody & { max_completion_tokens?: number }, signal: AbortSignal): GenerateOptions {
  const format = body.response_format;
  return {
    ...readFields(body, fields),
    model: body.model,
    maxTokens: body.max_completion_tokens ?? body.max_tokens,
    stop: typeof body.stop === "string" ? [body.stop] : body.stop,
    format: format?.type === "json_object" ? "json" : format?.type === "json_schema" ? (format.json_schema?.schema ?? "json") : undefined,
    signal,
  };
}

function textOf(content: string | { type: string; text?: string }[] | null): string {
  if (content === null) return "";
  if (typeof content === "string") return content;
  return content.map((part) => (part.type === "text" ? (part.text ?? "") : "")).join("");
}

function usage(summary: Pick<GenerationSummary, "promptTokens" | "completionTokens" | "cachedTokens">) {
  return {
    prompt_tokens: summary.promptTokens,
    completion_tokens: summary.completionTokens,
    total_tokens: summary.promptTokens + summary.completionTokens,
    prompt_tokens_details: { cached_tokens: summary.cachedTokens },
  };
}

const finishReason = (summary: GenerationSummary) => (summary.finishReason === "length" ? "length" : "stop");
const fingerprint = "llamaport";
/** The stream's last event, as the seed API shows it. */
const doneEvent = sseEvent("done", "[DONE]");

/** The fields every response and chunk of one request shares. */
function envelope(object: string, id: string, model: string) {
  return { id, object, created: Math.floor(Date.now() / 1000), model, system_fingerprint: fingerprint };
}

async function modelList(engine: EngineFacade) {
  return (await engine.listModels()).flatMap((model) => {
    const created = Math.floor(Date.parse(model.modifiedAt) / 1000);
    return [model.name, ...model.aliases].map((id) => ({ id, object: "model", created, owned_by: "llamaport" }));
  });
}

/** OpenAI's `error.code` for the problems its clients check for by code. */
const errorCodes: Partial<Record<Problem["code"], string>> = {
  not_found: "model_not_found",
  context_exceeded: "context_length_exceeded",
  busy: "server_busy",
};

export default definePlugin({
  name: "openai",
  version: "1.1.0",
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
      async handler({ body, engine, signal }) {
        const generation = engine.chat({
          ...generateOptions(body, signal),
          messages: body.messages.map((m) => ({
            role: m.role === "developer" ? "system" : m.role === "tool" ? "user" : m.role,
            content: textOf(m.content),
          })),
        });
        const base = envelope(body.stream ? "chat.completion.chunk" : "chat.completion", randomId("chatcmpl-"), generation.model);
        if (!body.stream) {
          const { text, summary } = await generation.collect();
          return {
            ...base,
            choices: [
              {
                index: 0,
                message: { role: "assistant", content: text, refusal: null },
                logprobs: null,
                finish_reason: finishReason(summary),
              },
            ],
            usage: usage(summary),
          };
        }
        const includeUsage = body.stream_options?.include_usage === true;
        const chunk = (delta: object, finish: string | null = null) => ({
          ...base,
          ...(includeUsage ? { usage: null } : {}),
          choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        });
        return sse(
          frames(generation, {
            start: () => [chunk({ role: "assistant", content: "" })],
            text: template(chunk({ content: TEXT })),
            done: (summary) => [
              chunk({}, finishReason(summary)),
              ...(includeUsage ? [{ ...base, choices: [], usage: usage(summary) }] : []),
              doneEvent,
            ],
          }),
        );
      },
    }),
    route({
      method: "POST",
      path: "/v1/completions",
      body: completionBody,
      async handler({ body, engine, signal }) {
        const prompts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
        if (body.stream && prompts.length > 1)
          throw new LlamaportError(
            "not_supported",
            "streaming several prompts in one request is not supported; send one request per prompt",
            {
              param: "prompt",
            },
          );
        // Several prompts run as concurrent requests (they share the model's sequences); one choice each.
        const generations = prompts.map((prompt) => engine.complete({ ...generateOptions(body, signal), prompt, raw: true }));
        const base = envelope("text_completion", randomId("cmpl-"), generations[0]!.model);
        const choice = (index: number, text: string, finish: string | null) => ({ index, text, logprobs: null, finish_reason: finish });
        if (!body.stream) {
          const results = await Promise.all(generations.map((g) => g.collect()));
          const sum = (pick: (s: GenerationSummary) => number) => results.reduce((total, { summary }) => total + pick(summary), 0);
          return {
            ...base,
            choices: results.map(({ text, summary }, index) => choice(index, text, finishReason(summary))),
            usage: usage({
              promptTokens: sum((s) => s.promptTokens),
              completionTokens: sum((s) => s.completionTokens),
              cachedTokens: sum((s) => s.cachedTokens),
            }),
          };
        }
        return sse(
          frames(generations[0]!, {
            text: template({ ...base, choices: [choice(0, TEXT, null)] }),
            done: (summary) => [{ ...base, choices: [choice(0, "", finishReason(summary))] }, doneEvent],
          }),
        );
      },
    }),
    route({
      method: "POST",
      path: "/v1/embeddings",
      body: embeddingsBody,
      async handler({ body, engine, signal }) {
        const input = typeof body.input === "string" ? [body.input] : body.input;
        const result = await engine.embed({ model: body.model, input, signal });
        return {
          object: "list",
          model: result.model,
          data: result.embeddings.map((embedding, index) => ({ object: "embedding", index, embedding })),
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
        const found = (await modelList(engine)).find((m) => m.id === params.model);
        if (!found) throw new LlamaportError("not_found", `model "${params.model}" not found`, { param: "model" });
        return found;
      },
    },
  ],
});
