/** Ollama protocol: /api/generate, /api/chat, /api/tags, /api/show, /api/ps, /api/embed, /api/version over the llamaport engine. */
import {
  definePlugin,
  LlamaportError,
  ndjson,
  parseDuration,
  route,
  t,
  type EngineFacade,
  type GenerateOptions,
  type Generation,
  type GenerationSummary,
  type ModelInfo,
} from "llamaport";

const options = t.Object({
  temperature: t.Optional(t.Number({ minimum: 0 })),
  top_p: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  top_k: t.Optional(t.Integer({ minimum: 0 })),
  min_p: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  seed: t.Optional(t.Integer()),
  num_predict: t.Optional(t.Integer()),
  stop: t.Optional(t.Array(t.String())),
  repeat_penalty: t.Optional(t.Number({ exclusiveMinimum: 0 })),
  presence_penalty: t.Optional(t.Number()),
  frequency_penalty: t.Optional(t.Number()),
});

const keepAlive = t.Optional(t.Union([t.String(), t.Number()]));
/** `"json"` or a JSON Schema object (Ollama's structured outputs); "" means no constraint. */
const format = t.Optional(t.Union([t.String(), t.Record(t.String(), t.Unknown())]));

const generateBody = t.Object({
  model: t.String({ minLength: 1 }),
  prompt: t.Optional(t.String()),
  system: t.Optional(t.String()),
  raw: t.Optional(t.Boolean()),
  stream: t.Optional(t.Boolean()),
  options: t.Optional(options),
  keep_alive: keepAlive,
  format,
});

const chatBody = t.Object({
  model: t.String({ minLength: 1 }),
  messages: t.Optional(
    t.Array(
      t.Object({
        role: t.Union([t.Literal("system"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
        content: t.String(),
      }),
    ),
  ),
  stream: t.Optional(t.Boolean()),
  options: t.Optional(options),
  keep_alive: keepAlive,
  format,
});

const modelBody = t.Object({ model: t.Optional(t.String()), name: t.Optional(t.String()) });

const embedBody = t.Object({
  model: t.String({ minLength: 1 }),
  input: t.Union([t.String(), t.Array(t.String())]),
  keep_alive: keepAlive,
});

type Options = typeof options.static;

function generateOptions(
  model: string,
  o: Options | undefined,
  keep: string | number | undefined,
  format: string | Record<string, unknown> | undefined,
  signal: AbortSignal,
): GenerateOptions {
  if (typeof format === "string" && format !== "" && format !== "json")
    throw new LlamaportError("invalid_request", `invalid format "${format}": expected "json" or a JSON schema object`, { param: "format" });
  return {
    model,
    format: format === "" ? undefined : (format as GenerateOptions["format"]),
    temperature: o?.temperature,
    topP: o?.top_p,
    topK: o?.top_k,
    minP: o?.min_p,
    seed: o?.seed,
    // Ollama: -1 = until the end, -2 = fill the context; both mean "no limit" here.
    maxTokens: o?.num_predict !== undefined && o.num_predict > 0 ? o.num_predict : undefined,
    stop: o?.stop,
    repeatPenalty: o?.repeat_penalty,
    presencePenalty: o?.presence_penalty,
    frequencyPenalty: o?.frequency_penalty,
    keepAlive: keep,
    signal,
  };
}

const ns = (ms: number) => Math.round(ms * 1e6);

/** Ollama's closing statistics, in nanoseconds. */
function stats(summary: GenerationSummary) {
  return {
    done_reason: summary.finishReason === "length" ? "length" : "stop",
    total_duration: ns(summary.timings.totalMs),
    load_duration: ns(summary.timings.loadMs),
    prompt_eval_count: summary.promptTokens - summary.cachedTokens,
    prompt_eval_duration: ns(summary.timings.promptMs),
    eval_count: summary.completionTokens,
    eval_duration: ns(summary.timings.generateMs),
  };
}

/** One NDJSON line per text piece, built from a prefix made once per request; then the closing line. */
async function* lines(generation: Generation, model: string, open: string, close: string, last: (s: GenerationSummary) => object) {
  const prefix = `{"model":${JSON.stringify(model)},"created_at":"`;
  const middle = `",${open}`;
  // Tokens arrive faster than the clock's millisecond: format the timestamp only when it changes.
  let stampMs = 0;
  let stamp = "";
  for await (const event of generation) {
    if (event.type === "text") {
      const now = Date.now();
      if (now !== stampMs) {
        stampMs = now;
        stamp = new Date(now).toISOString();
      }
      yield prefix + stamp + middle + JSON.stringify(event.text) + close;
    } else yield last(event);
  }
}

/** Empty prompt or no messages: load (or with keep_alive 0, unload) the model and answer at once, as Ollama does. */
async function loadOnly(engine: EngineFacade, model: string, keep: string | number | undefined, extra: object) {
  const found = engine.findModel(model);
  if (!found) await engine.load(model); // throws not_found with the list of names
  const name = found?.name ?? model;
  let unload = false;
  try {
    unload = keep !== undefined && parseDuration(keep) === 0;
  } catch (error) {
    throw new LlamaportError("invalid_request", `invalid keep_alive: ${(error as Error).message}`, { param: "keep_alive" });
  }
  if (unload) {
    await engine.unload(name);
    return { model: name, created_at: new Date().toISOString(), ...extra, done: true, done_reason: "unload" };
  }
  await engine.load(name, { keepAlive: keep });
  return { model: name, created_at: new Date().toISOString(), ...extra, done: true, done_reason: "load" };
}

function tag(model: ModelInfo, name: string) {
  return {
    name,
    model: name,
    modified_at: model.modifiedAt,
    size: model.sizeBytes ?? 0,
    digest: "",
    details: {
      parent_model: "",
      format: "gguf",
      family: model.details?.architecture ?? "llama",
      families: [model.details?.architecture ?? "llama"],
      parameter_size: "",
      quantization_level: model.details?.quantization ?? "",
    },
  };
}

export default definePlugin({
  name: "ollama",
  version: "1.0.0",
  error: (problem) => ({ error: problem.message }),
  routes: [
    route({
      method: "POST",
      path: "/api/generate",
      body: generateBody,
      async handler({ body, engine, signal }) {
        if (!body.prompt) return loadOnly(engine, body.model, body.keep_alive, { response: "" });
        const generation = engine.complete({
          ...generateOptions(body.model, body.options, body.keep_alive, body.format, signal),
          prompt: body.prompt,
          system: body.system,
          raw: body.raw,
        });
        if (body.stream === false) {
          const { text, summary } = await generation.collect();
          return { model: summary.model, created_at: new Date().toISOString(), response: text, done: true, ...stats(summary) };
        }
        const model = engine.findModel(body.model)?.name ?? body.model;
        return ndjson(
          lines(generation, model, `"response":`, `,"done":false}`, (summary) => ({
            model: summary.model,
            created_at: new Date().toISOString(),
            response: "",
            done: true,
            ...stats(summary),
          })),
        );
      },
    }),
    route({
      method: "POST",
      path: "/api/chat",
      body: chatBody,
      async handler({ body, engine, signal }) {
        if (!body.messages?.length) return loadOnly(engine, body.model, body.keep_alive, { message: { role: "assistant", content: "" } });
        const generation = engine.chat({
          ...generateOptions(body.model, body.options, body.keep_alive, body.format, signal),
          messages: body.messages.map((m) => ({ role: m.role === "tool" ? "user" : m.role, content: m.content })),
        });
        if (body.stream === false) {
          const { text, summary } = await generation.collect();
          return {
            model: summary.model,
            created_at: new Date().toISOString(),
            message: { role: "assistant", content: text },
            done: true,
            ...stats(summary),
          };
        }
        const model = engine.findModel(body.model)?.name ?? body.model;
        return ndjson(
          lines(generation, model, `"message":{"role":"assistant","content":`, `},"done":false}`, (summary) => ({
            model: summary.model,
            created_at: new Date().toISOString(),
            message: { role: "assistant", content: "" },
            done: true,
            ...stats(summary),
          })),
        );
      },
    }),
    {
      method: "GET",
      path: "/api/tags",
      handler: ({ engine }) => ({
        models: engine.listModels().flatMap((m) => [m.name, ...m.aliases].map((name) => tag(m, name))),
      }),
    },
    {
      method: "GET",
      path: "/api/ps",
      handler: ({ engine }) => ({
        models: engine.loadedModels().map((loaded) => {
          const info = engine.findModel(loaded.name);
          return {
            ...(info ? tag(info, loaded.name) : { name: loaded.name, model: loaded.name }),
            size: loaded.sizeBytes ?? 0,
            size_vram: 0,
            // Ollama shows a far-future time for models that stay loaded (in use, or keep_alive < 0).
            expires_at: loaded.expiresAt ?? "2318-08-31T00:00:00Z",
          };
        }),
      }),
    },
    route({
      method: "POST",
      path: "/api/show",
      body: modelBody,
      handler: ({ body, engine }) => {
        const name = body.model ?? body.name;
        if (!name) throw new LlamaportError("invalid_request", "model is required", { param: "model" });
        const model = engine.findModel(name);
        if (!model) throw new LlamaportError("not_found", `model '${name}' not found`, { param: "model" });
        const { details } = tag(model, model.name);
        return {
          modelfile: "",
          parameters: "",
          template: "",
          details,
          model_info: { "general.architecture": details.family },
          modified_at: model.modifiedAt,
        };
      },
    }),
    route({
      method: "POST",
      path: "/api/embed",
      body: embedBody,
      async handler({ body, engine, signal }) {
        const started = performance.now();
        const input = typeof body.input === "string" ? [body.input] : body.input;
        const result = await engine.embed({ model: body.model, input, signal, keepAlive: body.keep_alive });
        return {
          model: result.model,
          embeddings: result.embeddings,
          total_duration: ns(performance.now() - started),
          load_duration: 0,
          prompt_eval_count: result.promptTokens,
        };
      },
    }),
    { method: "GET", path: "/api/version", handler: () => ({ version: "0.6.0" }) },
  ],
});
