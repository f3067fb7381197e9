/** Ollama protocol: /api/generate, /api/chat, /api/tags, /api/show, /api/ps, /api/embed, /api/version over the llamaport engine. */
import {
  definePlugin,
  durationField,
  type EngineFacade,
  type FieldTable,
  frames,
  type GenerateOptions,
  type Generation,
  type GenerationSummary,
  LlamaportError,
  type ModelInfo,
  NOW,
  ndjson,
  readFields,
  route,
  type StaticDecode,
  t,
  TEXT,
  template,
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

/** Fields every generating route takes. `format` is `"json"` or a JSON Schema (structured outputs); "" means none. */
const requestFields = {
  model: t.String({ minLength: 1 }),
  stream: t.Optional(t.Boolean()),
  options: t.Optional(options),
  keep_alive: t.Optional(t.Union([t.String(), t.Number()])),
  format: t.Optional(t.Union([t.String(), t.Record(t.String(), t.Unknown())])),
};
const requestBody = t.Object(requestFields);

const generateBody = t.Object({
  ...requestFields,
  prompt: t.Optional(t.String()),
  system: t.Optional(t.String()),
  raw: t.Optional(t.Boolean()),
});

const chatBody = t.Object({
  ...requestFields,
  messages: t.Optional(
    t.Array(
      t.Object({ role: t.Union([t.Literal("system"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]), content: t.String() }),
    ),
  ),
});

const modelBody = t.Object({ model: t.Optional(t.String()), name: t.Optional(t.String()) });

const embedBody = t.Object({
  model: t.String({ minLength: 1 }),
  input: t.Union([t.String(), t.Array(t.String())]),
  keep_alive: requestFields.keep_alive,
});

/** Ollama clients write `name:latest` for a model registered as `name`; a model literally named so wins. */
async function modelName(engine: EngineFacade, name: string): Promise<string> {
  if (!name.endsWith(":latest") || (await engine.findModel(name))) return name;
  const bare = name.slice(0, -":latest".length);
  return (await engine.findModel(bare)) ? bare : name;
}

/** Engine option names to Ollama's fields, for reading requests and for naming fields in errors. */
const fields: FieldTable = {
  temperature: "options.temperature",
  topP: "options.top_p",
  topK: "options.top_k",
  minP: "options.min_p",
  seed: "options.seed",
  stop: "options.stop",
  maxTokens: "options.num_predict",
  repeatPenalty: "options.repeat_penalty",
  presencePenalty: "options.presence_penalty",
  frequencyPenalty: "options.frequency_penalty",
};

async function generateOptions(
  engine: EngineFacade,
  body: StaticDecode<typeof requestBody>,
  signal: AbortSignal,
): Promise<GenerateOptions> {
  const { format } = body;
  if (typeof format === "string" && format !== "" && format !== "json")
    throw new LlamaportError("invalid_request", `format: expected "json" or a JSON schema object, got "${format}"`, { param: "format" });
  const numPredict = body.options?.num_predict;
  return {
    ...readFields(body, fields),
    model: await modelName(engine, body.model),
    format: format === "" ? undefined : format,
    // Ollama: -1 = until the end, -2 = fill the context; both mean "no limit" here.
    maxTokens: numPredict !== undefined && numPredict > 0 ? numPredict : undefined,
    keepAliveMs: durationField(body.keep_alive, "keep_alive"),
    signal,
  };
}

const ns = (ms: number) => Math.round(ms * 1e6);

/** The closing line: Ollama's statistics, in nanoseconds. */
function lastLine(summary: GenerationSummary, fields: object) {
  return {
    model: summary.model,
    created_at: new Date().toISOString(),
    ...fields,
    done: true,
    done_reason: summary.finishReason === "length" ? "length" : "stop",
    total_duration: ns(summary.timings.totalMs),
    load_duration: ns(summary.timings.loadMs),
    prompt_eval_count: summary.promptTokens - summary.cachedTokens,
    prompt_eval_duration: ns(summary.timings.promptMs),
    eval_count: summary.completionTokens,
    eval_duration: ns(summary.timings.generateMs),
  };
}

/** A generation as Ollama answers it: NDJSON lines, or with `stream: false` one object holding the whole text. */
async function answer(generation: Generation, stream: boolean | undefined, content: (text: string) => object) {
  if (stream === false) {
    const { text, summary } = await generation.collect();
    return lastLine(summary, content(text));
  }
  return ndjson(
    frames(generation, {
      text: template({ model: generation.model, created_at: NOW, ...content(TEXT), done: false }),
      done: (summary) => [lastLine(summary, content(""))],
    }),
  );
}

/** Empty prompt or no messages: load (or with keep_alive 0, unload) the model and answer at once, as Ollama does. */
async function loadOnly(engine: EngineFacade, name: string, keepAlive: number | undefined, fields: object) {
  const model = await modelName(engine, name);
  const done = (reason: string) => ({ model, created_at: new Date().toISOString(), ...fields, done: true, done_reason: reason });
  if (keepAlive === 0) {
    await engine.unload(model);
    return done("unload");
  }
  await engine.load(model, { keepAliveMs: keepAlive });
  return done("load");
}

/** "135M", "8.0B": Ollama's parameter_size. */
function parameterSize(count: number | undefined): string {
  if (!count) return "";
  if (count >= 1e9) return `${(count / 1e9).toFixed(1)}B`;
  if (count >= 1e6) return `${Math.round(count / 1e6)}M`;
  return `${Math.round(count / 1e3)}K`;
}

function tag(model: ModelInfo, name: string) {
  const family = model.facts?.architecture ?? "";
  return {
    name,
    model: name,
    modified_at: model.modifiedAt,
    size: model.sizeBytes ?? 0,
    digest: "",
    details: {
      parent_model: "",
      format: "gguf",
      family,
      families: family ? [family] : [],
      parameter_size: parameterSize(model.facts?.parameterCount),
      quantization_level: model.facts?.quantization ?? "",
    },
  };
}

export default definePlugin({
  name: "ollama",
  version: "1.1.0",
  prefixes: ["/api"],
  fields,
  error: (problem) => ({ error: problem.message }),
  routes: [
    route({
      method: "POST",
      path: "/api/generate",
      body: generateBody,
      async handler({ body, engine, signal }) {
        if (!body.prompt) return loadOnly(engine, body.model, durationField(body.keep_alive, "keep_alive"), { response: "" });
        const generation = engine.complete({
          ...(await generateOptions(engine, body, signal)),
          prompt: body.prompt,
          system: body.system,
          raw: body.raw,
        });
        return answer(generation, body.stream, (text) => ({ response: text }));
      },
    }),
    route({
      method: "POST",
      path: "/api/chat",
      body: chatBody,
      async handler({ body, engine, signal }) {
        if (!body.messages?.length)
          return loadOnly(engine, body.model, durationField(body.keep_alive, "keep_alive"), {
            message: { role: "assistant", content: "" },
          });
        const generation = engine.chat({
          ...(await generateOptions(engine, body, signal)),
          messages: body.messages.map((m) => ({ role: m.role === "tool" ? "user" : m.role, content: m.content })),
        });
        return answer(generation, body.stream, (text) => ({ message: { role: "assistant", content: text } }));
      },
    }),
    {
      method: "GET",
      path: "/api/tags",
      handler: async ({ engine }) => ({
        models: (await engine.listModels()).flatMap((m) => [m.name, ...m.aliases].map((name) => tag(m, name))),
      }),
    },
    {
      method: "GET",
      path: "/api/ps",
      handler: async ({ engine }) => ({
        models: await Promise.all(
          engine.loadedModels().map(async (loaded) => {
            const info = await engine.findModel(loaded.name);
            return {
              ...(info ? tag(info, loaded.name) : { name: loaded.name, model: loaded.name }),
              size: loaded.sizeBytes,
              size_vram: 0,
              // Ollama shows a far-future time for models that stay loaded (in use, or keep_alive < 0).
              expires_at: loaded.expiresAt ?? "2318-08-31T00:00:00Z",
            };
          }),
        ),
      }),
    },
    route({
      method: "POST",
      path: "/api/show",
      body: modelBody,
      async handler({ body, engine }) {
        const name = body.model ?? body.name;
        if (!name) throw new LlamaportError("invalid_request", "model is required", { param: "model" });
        const model = await engine.findModel(await modelName(engine, name));
        if (!model) throw new LlamaportError("not_found", `model '${name}' not found`, { param: "model" });
        const { details } = tag(model, model.name);
        return {
          modelfile: "",
          parameters: "",
          template: model.facts?.chatTemplate ?? "",
          details,
          model_info: model.facts?.metadata ?? {},
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
        const model = await modelName(engine, body.model);
        const result = await engine.embed({ model, input, signal, keepAliveMs: durationField(body.keep_alive, "keep_alive") });
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
