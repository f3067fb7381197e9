/** OpenAI protocol: /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models over the llamaport engine. */
import {
  definePlugin,
  LlamaportError,
  randomId,
  route,
  sse,
  sseEvent,
  t,
  type EngineFacade,
  type GenerateOptions,
  type Generation,
  type GenerationSummary,
  type Problem,
} from "llamaport";

const nullable = <T extends Parameters<typeof t.Union>[0][number]>(schema: T) => t.Optional(t.Union([schema, t.Null()]));

const contentPart = t.Object({ type: t.String(), text: t.Optional(t.String()) });
const message = t.Object({
  role: t.Union([t.Literal("system"), t.Literal("developer"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
  content: t.Union([t.String(), t.Array(contentPart), t.Null()]),
  name: t.Optional(t.String()),
});

/** Sampling fields shared by chat and legacy completions; extras are llama-server's names (top_k, min_p, ...). */
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

type SamplingBody = {
  [K in keyof typeof samplingFields]?: unknown;
};

function options(body: SamplingBody & { max_completion_tokens?: number | null }, signal: AbortSignal): GenerateOptions {
  const b = body as Record<string, any>;
  return {
    model: b.model,
    maxTokens: b.max_completion_tokens ?? b.max_tokens ?? undefined,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    topK: b.top_k ?? undefined,
    minP: b.min_p ?? undefined,
    seed: b.seed ?? undefined,
    stop: typeof b.stop === "string" ? [b.stop] : (b.stop ?? undefined),
    presencePenalty: b.presence_penalty ?? undefined,
    frequencyPenalty: b.frequency_penalty ?? undefined,
    repeatPenalty: b.repeat_penalty ?? undefined,
    ignoreEos: b.ignore_eos ?? undefined,
    format:
      b.response_format?.type === "json_object"
        ? "json"
        : b.response_format?.type === "json_schema"
          ? (b.response_format.json_schema?.schema ?? "json")
          : undefined,
    signal,
  };
}

function textOf(content: string | { type: string; text?: string }[] | null): string {
  if (content === null) return "";
  if (typeof content === "string") return content;
  return content.map((part) => (part.type === "text" ? (part.text ?? "") : "")).join("");
}

function usage(summary: GenerationSummary) {
  return {
    prompt_tokens: summary.promptTokens,
    completion_tokens: summary.completionTokens,
    total_tokens: summary.promptTokens + summary.completionTokens,
    prompt_tokens_details: { cached_tokens: summary.cachedTokens },
  };
}

const finishReason = (summary: GenerationSummary) => (summary.finishReason === "length" ? "length" : "stop");
const fingerprint = "llamaport";

/**
 * Streams chunks whose JSON is built from strings made once per request, so each token costs one JSON-escaped
 * string and no object: `head` + (`firstOpen` on the first chunk, else `nextOpen`) + text + `close`.
 */
async function* chunks(
  generation: Generation,
  head: string,
  firstOpen: string,
  nextOpen: string,
  close: string,
  final: (summary: GenerationSummary) => unknown[],
) {
  let open = head + firstOpen;
  const next = head + nextOpen;
  for await (const event of generation) {
    if (event.type === "text") {
      yield open + JSON.stringify(event.text) + close;
      open = next;
    } else {
      // No text at all (e.g. an immediate end of sequence): clients still expect the opening chunk.
      if (open !== next) yield open + '""' + close;
      yield* final(event);
    }
  }
  yield sseEvent("done", "[DONE]");
}

function modelList(engine: EngineFacade) {
  const data = [];
  for (const model of engine.listModels()) {
    const created = Math.floor(Date.parse(model.modifiedAt) / 1000);
    for (const id of [model.name, ...model.aliases]) data.push({ id, object: "model", created, owned_by: "llamaport" });
  }
  return data;
}

const errorTypes: Record<Problem["code"], string> = {
  invalid_request: "invalid_request_error",
  not_found: "invalid_request_error",
  context_exceeded: "invalid_request_error",
  busy: "server_error",
  unavailable: "server_error",
  not_supported: "invalid_request_error",
  aborted: "invalid_request_error",
  internal: "server_error",
};

const errorCodes: Partial<Record<Problem["code"], string>> = {
  not_found: "model_not_found",
  context_exceeded: "context_length_exceeded",
  busy: "server_busy",
};

export default definePlugin({
  name: "openai",
  version: "1.0.0",
  error: (problem) => ({
    error: {
      message: problem.message,
      type: errorTypes[problem.code],
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
        const id = randomId("chatcmpl-");
        const created = Math.floor(Date.now() / 1000);
        const generation = engine.chat({
          ...options(body, signal),
          messages: body.messages.map((m) => ({
            role: m.role === "developer" ? "system" : m.role === "tool" ? "user" : m.role,
            content: textOf(m.content),
          })),
        });
        if (!body.stream) {
          const { text, summary } = await generation.collect();
          return {
            id,
            object: "chat.completion",
            created,
            model: summary.model,
            system_fingerprint: fingerprint,
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
        const model = engine.findModel(body.model)?.name ?? body.model;
        const head = `{"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":"${fingerprint}",${includeUsage ? `"usage":null,` : ""}"choices":[{"index":0,"delta":{`;
        return sse(
          chunks(
            generation,
            head,
            `"role":"assistant","content":`,
            `"content":`,
            `},"logprobs":null,"finish_reason":null}]}`,
            (summary) => {
              const base = { id, object: "chat.completion.chunk", created, model: summary.model, system_fingerprint: fingerprint };
              const last: unknown[] = [
                {
                  ...base,
                  ...(includeUsage ? { usage: null } : {}),
                  choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason(summary) }],
                },
              ];
              if (includeUsage) last.push({ ...base, choices: [], usage: usage(summary) });
              return last;
            },
          ),
        );
      },
    }),
    route({
      method: "POST",
      path: "/v1/completions",
      body: completionBody,
      async handler({ body, engine, signal }) {
        const id = randomId("cmpl-");
        const created = Math.floor(Date.now() / 1000);
        const prompts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
        if (!body.stream) {
          // Several prompts run as concurrent requests (they share the model's sequences); one choice each.
          const results = await Promise.all(
            prompts.map((prompt) => engine.complete({ ...options(body, signal), prompt, raw: true }).collect()),
          );
          const total = results.reduce(
            (sum, { summary }) => ({
              ...sum,
              promptTokens: sum.promptTokens + summary.promptTokens,
              cachedTokens: sum.cachedTokens + summary.cachedTokens,
              completionTokens: sum.completionTokens + summary.completionTokens,
            }),
            { ...results[0]!.summary, promptTokens: 0, cachedTokens: 0, completionTokens: 0 },
          );
          return {
            id,
            object: "text_completion",
            created,
            model: total.model,
            system_fingerprint: fingerprint,
            choices: results.map(({ text, summary }, index) => ({ index, text, logprobs: null, finish_reason: finishReason(summary) })),
            usage: usage(total),
          };
        }
        if (prompts.length > 1)
          throw new LlamaportError(
            "not_supported",
            "streaming several prompts in one request is not supported; send one request per prompt",
            {
              param: "prompt",
            },
          );
        const generation = engine.complete({ ...options(body, signal), prompt: prompts[0]!, raw: true });
        const model = engine.findModel(body.model)?.name ?? body.model;
        const head = `{"id":"${id}","object":"text_completion","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":"${fingerprint}","choices":[{"index":0,`;
        return sse(
          chunks(generation, head, `"text":`, `"text":`, `,"logprobs":null,"finish_reason":null}]}`, (summary) => [
            {
              id,
              object: "text_completion",
              created,
              model: summary.model,
              system_fingerprint: fingerprint,
              choices: [{ index: 0, text: "", logprobs: null, finish_reason: finishReason(summary) }],
            },
          ]),
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
      handler: ({ engine }) => ({ object: "list", data: modelList(engine) }),
    },
    {
      method: "GET",
      path: "/v1/models/:model",
      handler: ({ engine, params }) => {
        const found = modelList(engine).find((m) => m.id === params.model);
        if (!found) throw new LlamaportError("not_found", `model "${params.model}" not found`, { param: "model" });
        return found;
      },
    },
  ],
});
