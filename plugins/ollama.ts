/**
 * Ollama protocol: /api/generate, /api/chat, /api/embed, /api/embeddings, /api/tags, /api/show, /api/ps, /api/pull,
 * /api/version and `/` over the llamaport engine; the other model-management routes say to edit models.yaml.
 */
import {
  type ChatMessage,
  definePlugin,
  durationField,
  type EngineFacade,
  type FieldTable,
  frames,
  type GeneratedToken,
  type GenerateOptions,
  type Generation,
  type GenerationSummary,
  LlamaportError,
  type ModelInfo,
  NOW,
  type PullProgress,
  ndjson,
  nullable,
  readFields,
  route,
  type StaticDecode,
  slot,
  t,
  TEXT,
  type ToolCall,
  template,
} from "llamaport";

// Options Ollama knows and llamaport honours. Others (num_keep, num_batch, num_gpu, main_gpu, use_mmap, num_thread,
// draft_num_predict, and the older mirostat*, tfs_z, penalize_newline, ...) pass unread: see the README's field table.
const options = t.Object({
  temperature: nullable(t.Number({ minimum: 0 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_k: nullable(t.Integer({ minimum: 0 })),
  min_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  typical_p: nullable(t.Number()),
  seed: nullable(t.Integer()),
  num_predict: nullable(t.Integer()),
  num_ctx: nullable(t.Integer({ minimum: 1 })),
  stop: nullable(t.Array(t.String())),
  repeat_penalty: nullable(t.Number({ exclusiveMinimum: 0 })),
  repeat_last_n: nullable(t.Integer({ minimum: -1 })),
  presence_penalty: nullable(t.Number()),
  frequency_penalty: nullable(t.Number()),
});

/** Images come as base64 strings; llamaport's models read text only, so any image is refused by name (never dropped). */
const images = nullable(t.Array(t.String()));

/** Fields every generating route takes. `format` is `"json"` or a JSON Schema (structured outputs); "" means none. */
const requestFields = {
  model: t.String({ minLength: 1 }),
  stream: nullable(t.Boolean()),
  options: nullable(options),
  keep_alive: nullable(t.Union([t.String(), t.Number()])),
  format: nullable(t.Union([t.String(), t.Record(t.String(), t.Unknown())])),
  think: nullable(t.Union([t.Boolean(), t.String()])),
  logprobs: nullable(t.Boolean()),
  top_logprobs: nullable(t.Integer({ minimum: 0, maximum: 20 })),
  // Accepted for what they say; llamaport never cuts a prompt (a too-long one is a 400) nor shifts the context.
  truncate: nullable(t.Boolean()),
  shift: nullable(t.Boolean()),
};
const requestBody = t.Object(requestFields);

const generateBody = t.Object({
  ...requestFields,
  prompt: nullable(t.String()),
  suffix: nullable(t.String()),
  system: nullable(t.String()),
  template: nullable(t.String()),
  context: nullable(t.Array(t.Integer({ minimum: 0 }))),
  raw: nullable(t.Boolean()),
  images,
});

/** A call in history: arguments are an object, as Ollama sends them; `id` only from newer clients. */
const toolCall = t.Object({
  id: nullable(t.String()),
  function: t.Object({ index: nullable(t.Integer()), name: t.String(), arguments: t.Record(t.String(), t.Unknown()) }),
});

const chatBody = t.Object({
  ...requestFields,
  messages: nullable(
    t.Array(
      t.Object({
        role: t.Union([t.Literal("system"), t.Literal("user"), t.Literal("assistant"), t.Literal("tool")]),
        // Optional: a message that only calls tools may leave it out (checked in `chatMessages`).
        content: nullable(t.String()),
        images,
        tool_calls: nullable(t.Array(toolCall)),
        tool_name: nullable(t.String()),
        tool_call_id: nullable(t.String()),
      }),
    ),
  ),
  tools: nullable(
    t.Array(
      t.Object({
        type: t.Literal("function"),
        function: t.Object({
          name: t.String(),
          description: nullable(t.String()),
          parameters: nullable(t.Record(t.String(), t.Unknown())),
        }),
      }),
    ),
  ),
});
type ChatBody = StaticDecode<typeof chatBody>;

const modelBody = t.Object({ model: nullable(t.String()), name: nullable(t.String()), verbose: nullable(t.Boolean()) });

const embedBody = t.Object({
  model: t.String({ minLength: 1 }),
  input: nullable(t.Union([t.String(), t.Array(t.String())])),
  truncate: nullable(t.Boolean()),
  dimensions: nullable(t.Integer({ minimum: 1 })),
  keep_alive: requestFields.keep_alive,
  options: nullable(t.Record(t.String(), t.Unknown())),
});

const embeddingsBody = t.Object({
  model: t.String({ minLength: 1 }),
  prompt: nullable(t.String()),
  keep_alive: requestFields.keep_alive,
  options: nullable(t.Record(t.String(), t.Unknown())),
});

/** Ollama clients write `name:latest` for a model registered as `name`; a model literally named so wins. */
async function modelName(engine: EngineFacade, name: string): Promise<string> {
  if (!name.endsWith(":latest") || (await engine.findModel(name))) return name;
  const bare = name.slice(0, -":latest".length);
  return (await engine.findModel(bare)) ? bare : name;
}

/** A name as Ollama lists it: with a tag, `:latest` when it has none. */
const ollamaName = (name: string) => (/:[^/]*$/.test(name) ? name : `${name}:latest`);

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
  repeatLastN: "options.repeat_last_n",
  presencePenalty: "options.presence_penalty",
  frequencyPenalty: "options.frequency_penalty",
  contextSize: "options.num_ctx",
  logprobs: "top_logprobs",
  prompt: "prompt",
  suffix: "suffix",
  context: "context",
  input: "input",
  dimensions: "dimensions",
};

/** Engine options read as they are (the rest need a rule of Ollama's). */
const directFields: FieldTable = {
  temperature: "options.temperature",
  topP: "options.top_p",
  topK: "options.top_k",
  minP: "options.min_p",
  stop: "options.stop",
  repeatPenalty: "options.repeat_penalty",
  repeatLastN: "options.repeat_last_n",
  presencePenalty: "options.presence_penalty",
  frequencyPenalty: "options.frequency_penalty",
  contextSize: "options.num_ctx",
};

function refuse(param: string, message: string): never {
  throw new LlamaportError("invalid_request", `${param}: ${message}`, { param });
}

/** `images` with any image in it: llamaport runs text-only models, and answering without the picture would mislead. */
function refuseImages(list: string[] | undefined, param: string, model: string): void {
  if (list?.length) refuse(param, `"${model}" does not support images: llamaport runs text-only models (no vision)`);
}

async function generateOptions(
  engine: EngineFacade,
  body: StaticDecode<typeof requestBody>,
  signal: AbortSignal,
): Promise<GenerateOptions> {
  const { format } = body;
  if (typeof format === "string" && format !== "" && format !== "json")
    throw new LlamaportError("invalid_request", `format: expected "json" or a JSON schema object, got "${format}"`, { param: "format" });
  const typicalP = body.options?.typical_p;
  if (typicalP !== undefined && typicalP !== 1)
    refuse(
      "options.typical_p",
      "typical sampling is not available (node-llama-cpp has no typical-p sampler); leave it out or send 1 (off)",
    );
  const { num_predict: numPredict, seed } = body.options ?? {};
  return {
    ...readFields(body, directFields),
    model: await modelName(engine, body.model),
    format: format === "" ? undefined : format,
    // Ollama: -1 = until the end, -2 = fill the context; both mean "no limit" here.
    maxTokens: numPredict !== undefined && numPredict > 0 ? numPredict : undefined,
    // Ollama: a negative seed (its default is -1) means a random one.
    seed: seed !== undefined && seed >= 0 ? seed : undefined,
    ...(body.logprobs && { logprobs: body.top_logprobs ?? 0 }),
    keepAliveMs: durationField(body.keep_alive, "keep_alive"),
    signal,
  };
}

/** A template that has `<think>` and `</think>` is a thinking model's (Ollama's own test). */
const thinks = (model: ModelInfo) => /<think>/.test(model.chatTemplate ?? "") && /<\/think>/.test(model.chatTemplate ?? "");

/**
 * `think`, as Ollama answers it for a model without thinking: `false` is fine, anything else a 400 saying so. For a
 * thinking model llamaport cannot give Ollama's separate `thinking` field, so any explicit setting is refused too.
 */
async function checkThink(engine: EngineFacade, think: boolean | string | undefined, name: string, asked: string): Promise<void> {
  if (think === undefined) return;
  const model = await engine.findModel(name);
  if (!model) return; // the engine answers 404 with the known names
  if (thinks(model))
    refuse(
      "think",
      "llamaport does not separate a thinking model's reasoning from its answer (Ollama's `thinking` field); leave think out and the reasoning stays in the text",
    );
  if (think !== false) throw new LlamaportError("invalid_request", `"${asked}" does not support thinking`, { param: "think" });
}

/** Tool fields in problems (names of the engine -> Ollama's). */
const toolFields = { "tools[].name": "tools[].function.name", "tools[].parameters": "tools[].function.parameters" };

/** Messages with tool calls and results. Calls sent back without an id get one; results without one answer calls in order. */
function chatMessages(messages: NonNullable<ChatBody["messages"]>): ChatMessage[] {
  return messages.map((m, i) => {
    if (m.content === undefined && !m.tool_calls?.length)
      throw new LlamaportError("invalid_request", `messages[${i}].content: required (only a message with tool_calls may leave it out)`, {
        param: `messages[${i}].content`,
      });
    const content = m.content ?? "";
    if (m.role === "tool") return { role: "tool", content, toolCallId: m.tool_call_id, toolName: m.tool_name };
    const toolCalls = m.tool_calls?.map(
      (call, j): ToolCall => ({ id: call.id ?? `call_${i}_${j}`, name: call.function.name, arguments: call.function.arguments }),
    );
    return { role: m.role, content, toolCalls };
  });
}

/** Calls as Ollama sends them: arguments as an object. */
type IndexedCall = { index: number; call: ToolCall };
function wireToolCalls(calls: readonly IndexedCall[]) {
  return calls.map(({ index, call }) => ({ id: call.id, function: { index, name: call.name, arguments: call.arguments } }));
}

const ns = (ms: number) => Math.round(ms * 1e6);

/** The closing line: Ollama's statistics, in nanoseconds. */
function lastLine(summary: GenerationSummary, model: string, fields: object) {
  return {
    model,
    created_at: new Date().toISOString(),
    ...fields,
    done: true,
    // Ollama ends a turn with tool calls as "stop".
    done_reason: summary.finishReason === "length" ? "length" : "stop",
    ...(summary.context && { context: summary.context }),
    total_duration: ns(summary.timings.totalMs),
    load_duration: ns(summary.timings.loadMs),
    prompt_eval_count: summary.promptTokens - summary.cachedTokens,
    prompt_eval_duration: ns(summary.timings.promptMs),
    eval_count: summary.completionTokens,
    eval_duration: ns(summary.timings.generateMs),
  };
}

/** A token as Ollama's `logprobs` show it: `bytes` and `top_logprobs` only when there are some. */
function logprobOf(token: GeneratedToken) {
  const bytes = (text: string, own: number[]) => (text === "" ? {} : { bytes: own });
  return {
    token: token.text,
    logprob: token.logprob ?? 0,
    ...bytes(token.text, token.bytes),
    ...(token.top?.length && {
      top_logprobs: token.top.map((alt) => ({ token: alt.text, logprob: alt.logprob, ...bytes(alt.text, alt.bytes) })),
    }),
  };
}

/**
 * A generation as Ollama answers it: NDJSON lines, or with `stream: false` one object holding the whole text. `model`
 * is the name as the client wrote it, as Ollama echoes it. Tool calls come whole: one line each when streamed, with
 * the text when not.
 */
async function answer(
  generation: Generation,
  body: { stream?: boolean; logprobs?: boolean; model: string },
  content: (text: string, calls?: IndexedCall[]) => object,
) {
  const { model } = body;
  if (body.stream === false) {
    const { text, toolCalls, tokens, summary } = await generation.collect();
    const calls = toolCalls.length > 0 ? toolCalls.map((call, index) => ({ index, call })) : undefined;
    return lastLine(summary, model, { ...content(text, calls), ...(body.logprobs && { logprobs: (tokens ?? []).map(logprobOf) }) });
  }
  const logprobs = body.logprobs ? { logprobs: slot((delta) => (delta.tokens ?? []).map(logprobOf)) } : {};
  return ndjson(
    frames(generation, {
      text: template({ model, created_at: NOW, ...content(TEXT), done: false, ...logprobs }),
      toolCallEnd: (end) => [{ model, created_at: new Date().toISOString(), ...content("", [end]), done: false }],
      done: (summary) => [lastLine(summary, model, content(""))],
    }),
  );
}

/**
 * Empty prompt or no messages: load (or with keep_alive 0, unload) the model and answer at once, as Ollama does;
 * with `options.num_ctx`, a context of that size.
 */
async function loadOnly(engine: EngineFacade, body: StaticDecode<typeof requestBody>, fields: object) {
  const model = await modelName(engine, body.model);
  const keepAlive = durationField(body.keep_alive, "keep_alive");
  const done = (reason: string) => ({
    model: body.model,
    created_at: new Date().toISOString(),
    ...fields,
    done: true,
    done_reason: reason,
  });
  if (keepAlive === 0) {
    await engine.unload(model);
    return done("unload");
  }
  await engine.load(model, { keepAliveMs: keepAlive, contextSize: body.options?.num_ctx });
  return done("load");
}

/** Ollama's parameter_size ("8B", "134.52M", "202K"): its format.HumanNumber. */
function parameterSize(count: number | undefined): string {
  if (!count) return "";
  const scaled = (unit: number, decimals: number, suffix: string) => {
    const value = count / unit;
    return `${value === Math.floor(value) ? value.toFixed(0) : value.toFixed(decimals)}${suffix}`;
  };
  if (count >= 1e9) return scaled(1e9, 1, "B");
  if (count >= 1e6) return scaled(1e6, 2, "M");
  if (count >= 1e3) return `${Math.round(count / 1e3)}K`;
  return String(count);
}

function details(model: ModelInfo) {
  const family = model.facts?.architecture ?? "";
  return {
    parent_model: "",
    format: "gguf",
    family,
    families: family ? [family] : [],
    parameter_size: parameterSize(model.facts?.parameterCount),
    quantization_level: model.facts?.quantization ?? "",
  };
}

/** What the model can do (the engine reads it as Ollama does; never "thinking": see `checkThink`; no "vision"). */
const capabilities = (model: ModelInfo): string[] => (model.capabilities.length > 0 ? model.capabilities : ["completion"]);

/** One model as /api/tags lists it, under one of its names. */
function tag(model: ModelInfo, name: string, digest: string | undefined) {
  const { facts } = model;
  return {
    name: ollamaName(name),
    model: ollamaName(name),
    modified_at: model.modifiedAt,
    size: model.sizeBytes ?? 0,
    digest: digest ?? "",
    details: {
      ...details(model),
      ...(facts?.trainedContext && { context_length: facts.trainedContext }),
      ...(facts?.embeddingLength && { embedding_length: facts.embeddingLength }),
    },
    capabilities: capabilities(model),
  };
}

/** A Modelfile PARAMETER value as Ollama prints it (Go's %#v): strings quoted, numbers plain. */
const goValue = (value: unknown) => (typeof value === "string" ? JSON.stringify(value) : String(value));

/** The model's settings as Ollama's Modelfile parameters: the context size and models.yaml's sampling defaults. */
function parameters(model: ModelInfo): [string, unknown][] {
  const d = model.defaults;
  const named: [string, unknown][] = [
    ["num_ctx", model.context],
    ["temperature", d.temperature],
    ["top_p", d.topP],
    ["top_k", d.topK],
    ["min_p", d.minP],
    ["seed", d.seed],
    ["num_predict", d.maxTokens],
    ["repeat_penalty", d.repeatPenalty],
    ["presence_penalty", d.presencePenalty],
    ["frequency_penalty", d.frequencyPenalty],
    ...(d.stop ?? []).map((stop): [string, unknown] => ["stop", stop]),
  ];
  return named.filter(([, value]) => value !== undefined);
}

/** The Modelfile Ollama would print for this model. */
function modelfile(model: ModelInfo, name: string, license: unknown): string {
  const lines = ['# Modelfile generated by "ollama show"', "# To build a new Modelfile based on this, replace FROM with:"];
  lines.push(`# FROM ${ollamaName(name)}`, "", `FROM ${model.file ?? name}`);
  if (model.chatTemplate) lines.push(`TEMPLATE """${model.chatTemplate}"""`);
  for (const [key, value] of parameters(model)) lines.push(`PARAMETER ${key} ${goValue(value)}`);
  if (typeof license === "string") lines.push(`LICENSE """${license}"""`);
  return `${lines.join("\n")}\n`;
}

/**
 * The header as Ollama's `model_info` shows it: every key but `general.name` and the chat template (shown as
 * `template`), lists of more than 5 items as empty lists, and `general.parameter_count`.
 */
function modelInfo(model: ModelInfo): Record<string, unknown> {
  const info: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(model.facts?.metadata ?? {})) {
    if (key === "general.name" || key === "tokenizer.chat_template") continue;
    info[key] = Array.isArray(value) && value.length > 5 ? [] : value;
  }
  if (model.facts) info["general.parameter_count"] = model.facts.parameterCount;
  return info;
}

/** `/api/pull`'s body; `name` is what older clients send, `insecure` (a registry without TLS) changes nothing here. */
const pullBody = t.Object({
  model: t.Optional(t.String()),
  name: t.Optional(t.String()),
  stream: t.Optional(t.Boolean()),
  insecure: t.Optional(t.Boolean()),
});

/** Ollama's line for a pull step; downloads are named by the file's SHA-256, or by the hash of its name when the server announced none. */
async function pullLine(event: PullProgress): Promise<Record<string, unknown>> {
  if (event.stage === "resolving") return { status: "pulling manifest" };
  if (event.stage === "verifying") return { status: "verifying sha256 digest" };
  if (event.stage === "registering") return { status: "writing manifest" };
  const digest = event.sha256 ?? (await sha256Hex(event.file));
  return {
    status: `pulling ${digest.slice(0, 12)}`,
    digest: `sha256:${digest}`,
    total: event.progress.totalBytes,
    completed: event.progress.downloadedBytes,
  };
}

async function sha256Hex(text: string): Promise<string> {
  const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A pull as Ollama streams it: `pulling manifest`, download progress, `verifying sha256 digest`, `writing manifest`,
 * `success`. The first line waits for the engine's first step, so a source that cannot be pulled is an error response.
 */
async function* pullLines(engine: EngineFacade, source: string, name: string | undefined, signal: AbortSignal) {
  const lines: Promise<Record<string, unknown>>[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const push = (line: Promise<Record<string, unknown>>) => {
    lines.push(line);
    wake?.();
  };
  const pull = engine.pull({ source, name, signal, onProgress: (event) => push(pullLine(event)) });
  const finish = () => {
    finished = true;
    wake?.();
  };
  // Its error is thrown below, as the stream's last line.
  pull.then(() => {
    push(Promise.resolve({ status: "success" }));
    finish();
  }, finish);
  for (;;) {
    if (lines.length > 0) {
      yield await lines.shift()!;
      continue;
    }
    if (finished) {
      await pull; // throws the pull's error as the stream's last line
      return;
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
  }
}

/** What Ollama's model-management routes get: llamaport's models come from models.yaml, not from the API. */
function managedByFile(action: string): never {
  throw new LlamaportError(
    "not_supported",
    `${action} is not supported: llamaport serves the models listed in models.yaml; edit that file to add, copy, rename or remove a model (it is reloaded on save)`,
  );
}

export default definePlugin({
  name: "ollama",
  version: "1.3.0",
  prefixes: ["/api"],
  fields: { ...fields, ...toolFields },
  error: (problem) => ({ error: problem.message }),
  routes: [
    route({
      method: "POST",
      path: "/api/generate",
      body: generateBody,
      async handler({ body, engine, signal }) {
        if (body.raw && (body.template || body.system || body.context?.length))
          refuse("raw", "raw mode does not support template, system, or context");
        if (body.template)
          refuse(
            "template",
            "Ollama's Go templates are not supported; set the model's chat_template in models.yaml (a Jinja template or a chat wrapper name), or send raw: true with the prompt already templated",
          );
        refuseImages(body.images, "images", body.model);
        await checkThink(engine, body.think, await modelName(engine, body.model), body.model);
        if (!body.prompt) return loadOnly(engine, body, { response: "" });
        const generation = engine.complete({
          ...(await generateOptions(engine, body, signal)),
          prompt: body.prompt,
          system: body.system,
          raw: body.raw,
          suffix: body.suffix || undefined,
          context: body.context,
          reportContext: !body.raw,
        });
        return answer(generation, body, (text) => ({ response: text }));
      },
    }),
    route({
      method: "POST",
      path: "/api/chat",
      body: chatBody,
      async handler({ body, engine, signal }) {
        body.messages?.forEach((m, i) => {
          refuseImages(m.images, `messages[${i}].images`, body.model);
        });
        await checkThink(engine, body.think, await modelName(engine, body.model), body.model);
        if (!body.messages?.length) return loadOnly(engine, body, { message: { role: "assistant", content: "" } });
        const generation = engine.chat({
          ...(await generateOptions(engine, body, signal)),
          messages: chatMessages(body.messages),
          tools: body.tools?.map(({ function: f }) => ({ name: f.name, description: f.description, parameters: f.parameters })),
        });
        return answer(generation, body, (text, calls) => ({
          message: { role: "assistant", content: text, ...(calls ? { tool_calls: wireToolCalls(calls) } : {}) },
        }));
      },
    }),
    {
      method: "GET",
      path: "/api/tags",
      handler: async ({ engine }) => {
        const models = await engine.listModels();
        // Aliases name the same file: one digest each, computed once (and remembered) by the engine.
        const digests = await Promise.all(models.map((m) => engine.digest(m.name)));
        return { models: models.flatMap((m, i) => [m.name, ...m.aliases].map((name) => tag(m, name, digests[i]))) };
      },
    },
    {
      method: "GET",
      path: "/api/ps",
      handler: async ({ engine }) => ({
        models: await Promise.all(
          engine.loadedModels().map(async (loaded) => {
            const info = await engine.findModel(loaded.name);
            return {
              ...(info ? tag(info, loaded.name, await engine.digest(loaded.name)) : { name: ollamaName(loaded.name) }),
              size: loaded.sizeBytes,
              size_vram: 0,
              // Ollama shows a far-future time for models that stay loaded (in use, or keep_alive < 0).
              expires_at: loaded.expiresAt ?? "2318-08-31T00:00:00Z",
              context_length: loaded.contextSize,
            };
          }),
        ),
      }),
    },
    route({
      method: "POST",
      path: "/api/show",
      body: modelBody,
      // `verbose` asks for the long lists (the vocabulary) and tensors in full; the lists stay empty here (see the README).
      async handler({ body, engine }) {
        const name = body.model || body.name;
        if (!name) throw new LlamaportError("invalid_request", "model is required", { param: "model" });
        const model = await engine.findModel(await modelName(engine, name));
        if (!model) throw new LlamaportError("not_found", `model '${name}' not found`, { param: "model" });
        const license = model.facts?.metadata["general.license"];
        return {
          ...(typeof license === "string" && { license }),
          modelfile: modelfile(model, name, license),
          parameters: parameters(model)
            .map(([key, value]) => `${key.padEnd(30)} ${goValue(value)}`)
            .join("\n"),
          template: model.chatTemplate ?? "",
          details: details(model),
          model_info: modelInfo(model),
          tensors: model.facts?.tensors ?? [],
          capabilities: capabilities(model),
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
        const input = body.input === undefined || body.input === "" ? [] : typeof body.input === "string" ? [body.input] : body.input;
        const model = await modelName(engine, body.model);
        const keepAliveMs = durationField(body.keep_alive, "keep_alive");
        // No input: load the model and answer with no embeddings, as Ollama does.
        if (input.length === 0) {
          await engine.load(model, { keepAliveMs });
          return { model: body.model, embeddings: [] };
        }
        // Ollama cuts inputs longer than the context unless truncate is false (then the input is too long: 400).
        const truncate = body.truncate !== false;
        const result = await engine.embed({ model, input, signal, keepAliveMs, truncate, dimensions: body.dimensions });
        return {
          model: body.model,
          embeddings: result.embeddings,
          total_duration: ns(performance.now() - started),
          load_duration: 0,
          prompt_eval_count: result.promptTokens,
        };
      },
    }),
    route({
      method: "POST",
      path: "/api/embeddings",
      body: embeddingsBody,
      // The older route: one prompt, and the model's vector as it is (Ollama does not normalize it here).
      async handler({ body, engine, signal }) {
        const model = await modelName(engine, body.model);
        const keepAliveMs = durationField(body.keep_alive, "keep_alive");
        if (!body.prompt) {
          await engine.load(model, { keepAliveMs });
          return { embedding: [] };
        }
        const result = await engine.embed({ model, input: [body.prompt], signal, keepAliveMs, normalize: false });
        return { embedding: result.embeddings[0] };
      },
    }),
    { method: "GET", path: "/api/version", handler: () => ({ version: "0.6.0" }) },
    // What Ollama answers on `/` (clients probe it to find a server); HEAD is answered from GET by the router.
    {
      method: "GET",
      path: "/",
      handler: () => new Response("Ollama is running", { headers: { "content-type": "text/plain; charset=utf-8" } }),
    },
    route({
      method: "POST",
      path: "/api/pull",
      body: pullBody,
      // A name in models.yaml (its file is fetched if missing), or a source: hf.co/<owner>/<repo>:<quant> (Ollama's own
      // way to pull from Hugging Face; the name stays usable as it is), hf:..., an http(s) URL. No Ollama library.
      async handler({ body, engine, signal }) {
        const asked = body.model || body.name;
        if (!asked) throw new LlamaportError("invalid_request", "model is required", { param: "model" });
        const source = await modelName(engine, asked);
        const name =
          /^(hf\.co|huggingface\.co)\//.test(asked) && !(await engine.findModel(source)) ? asked.replace(/:latest$/, "") : undefined;
        if (body.stream === false) {
          await engine.pull({ source, name, signal });
          return { status: "success" };
        }
        return ndjson(pullLines(engine, source, name, signal));
      },
    }),
    { method: "POST", path: "/api/create", handler: () => managedByFile("creating a model") },
    { method: "POST", path: "/api/copy", handler: () => managedByFile("copying a model") },
    { method: "DELETE", path: "/api/delete", handler: () => managedByFile("deleting a model") },
    { method: "POST", path: "/api/push", handler: () => managedByFile("pushing a model") },
    { method: "HEAD", path: "/api/blobs/:digest", handler: () => managedByFile("uploading model files") },
    { method: "POST", path: "/api/blobs/:digest", handler: () => managedByFile("uploading model files") },
  ],
});
