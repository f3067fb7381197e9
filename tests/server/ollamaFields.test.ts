/**
 * Ollama's fields end to end, each honoured or refused by name (never dropped): /api/tags and /api/show from the GGUF
 * header (digest once), num_ctx, context arrays, suffix, logprobs, think, images, template, options, the embeddings
 * routes, `/`, and the model-management routes, through the official `ollama` client and as raw HTTP.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Ollama } from "ollama";
import { bodyOf, postJson, readChunks, startTestServer, type TestServer, tempDir } from "../support/testServer.ts";

// Its own cache folder: the synthetic models are written afresh, so this server computes their digests itself.
const cache = tempDir("llamaport-ollama-cache-");
const toolsTemplate = "{% if tools %}{{ tools }}{% endif %}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>";
const thinkingTemplate = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|><think>\n</think>";
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(
    {
      demo: {
        source: "synthetic:demo",
        aliases: ["llama3:8b"],
        context: 256,
        parallel: 2,
        defaults: { temperature: 0.7, stop: ["</s>"] },
      },
      fim: { source: "synthetic:tiny-fim", context: 256, parallel: 1 },
      tools: { source: "synthetic:demo", context: 256, parallel: 1, chat_template: toolsTemplate },
      thinker: { source: "synthetic:demo", context: 256, parallel: 1, chat_template: thinkingTemplate },
    },
    { cacheDir: cache.path },
  );
  // Synthetic models are written on first use; load them so their files exist (as a downloaded GGUF would).
  for (const model of ["demo", "fim", "tools", "thinker"]) await server.engine.load(model);
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
  cache[Symbol.dispose]();
});

const client = () => new Ollama({ host: server.url });
const generate = (body: Record<string, unknown>) => postJson(`${server.url}/api/generate`, { model: "demo", ...body });
const chat = (body: Record<string, unknown>) => postJson(`${server.url}/api/chat`, { model: "demo", ...body });
const greedy = { temperature: 0 };
/** An Ollama error from the official client: its status and message. */
const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (e: { status_code?: number; error?: string }) => e,
  );
const fileOf = async (name: string) => (await server.engine.findModel(name))!.file!;
const digestsComputed = () => server.logs.filter((line) => line.includes("computed the sha256 of")).length;

describe("GET / and HEAD /", () => {
  test("answer as Ollama does, so clients that probe the server find it; /health stays the host's", async () => {
    const get = await fetch(`${server.url}/`);
    expect(get.status).toBe(200);
    expect(get.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(await get.text()).toBe("Ollama is running");
    const head = await fetch(`${server.url}/`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(await bodyOf(fetch(`${server.url}/health`))).toEqual({ status: "ok" });
  });
});

describe("/api/tags", () => {
  test("names as Ollama lists them, the file's sha256 as digest (computed once), size, details and capabilities", async () => {
    const before = digestsComputed();
    const tags = await bodyOf(fetch(`${server.url}/api/tags`));
    const byName = new Map(tags.models.map((m: { name: string }) => [m.name, m]));
    expect([...byName.keys()].sort()).toEqual(["demo:latest", "fim:latest", "llama3:8b", "thinker:latest", "tools:latest"]);
    const demoFile = await fileOf("demo");
    const demo = byName.get("demo:latest") as Record<string, any>;
    expect(demo).toMatchObject({
      name: "demo:latest",
      model: "demo:latest",
      size: readFileSync(demoFile).length,
      digest: createHash("sha256").update(readFileSync(demoFile)).digest("hex"),
      capabilities: ["completion"],
    });
    expect(Object.keys(demo)).toEqual(["name", "model", "modified_at", "size", "digest", "details", "capabilities"]);
    // The alias is the same file: the same digest, as an `ollama cp` copy shows it.
    expect((byName.get("llama3:8b") as { digest: string }).digest).toBe(demo.digest);
    expect((byName.get("fim:latest") as { capabilities: string[] }).capabilities).toEqual(["completion", "insert"]);
    expect((byName.get("tools:latest") as { capabilities: string[] }).capabilities).toEqual(["completion", "tools"]);
    // Two files (demo, tools and thinker share one): two digests, and none more on the next listing.
    expect(digestsComputed() - before).toBe(2);
    const again = await bodyOf(fetch(`${server.url}/api/tags`));
    expect(again.models.map((m: { digest: string }) => m.digest)).toEqual(tags.models.map((m: { digest: string }) => m.digest));
    expect(digestsComputed() - before).toBe(2);
  });

  test("through the official client: list", async () => {
    const { models } = await client().list();
    const demo = models.find((m) => m.name === "demo:latest")!;
    expect(demo.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(demo.details.quantization_level).toBe("Q8_0");
    expect(demo.details.parameter_size).toBe("202K");
    expect(new Date(demo.modified_at).getTime()).toBeGreaterThan(0);
  });
});

describe("/api/show", () => {
  test("model_info, parameters, template, modelfile, tensors and capabilities, as Ollama shows them", async () => {
    const show = await bodyOf(postJson(`${server.url}/api/show`, { model: "demo:latest" }));
    expect(Object.keys(show)).toEqual([
      "modelfile",
      "parameters",
      "template",
      "details",
      "model_info",
      "tensors",
      "capabilities",
      "modified_at",
    ]);
    expect(show.parameters).toBe(
      ["num_ctx                        256", "temperature                    0.7", 'stop                           "</s>"'].join("\n"),
    );
    expect(show.modelfile).toContain(`FROM ${await fileOf("demo")}\n`);
    expect(show.modelfile).toContain('PARAMETER num_ctx 256\nPARAMETER temperature 0.7\nPARAMETER stop "</s>"\n');
    // synthetic:demo has no chat template (it is served with ChatML): nothing to show.
    expect(show.template).toBe("");
    expect(show.capabilities).toEqual(["completion"]);
    expect(show.model_info).toMatchObject({
      "general.architecture": "llama",
      "general.parameter_count": 202_048,
      "llama.context_length": 2048,
      "llama.embedding_length": 64,
      "tokenizer.ggml.model": "llama",
      // Lists of more than 5 items are sent empty, as Ollama does unless verbose.
      "tokenizer.ggml.tokens": [],
    });
    expect(show.model_info).not.toHaveProperty("general.name");
    expect(show.tensors).toContainEqual({ name: "token_embd.weight", type: "Q8_0", shape: [64, 1000] });
    expect(show.tensors.length).toBe(2 + 1 + 2 * 9);
  });

  test("a Jinja chat_template from models.yaml is the template shown; an unknown model is a 404", async () => {
    const show = await client().show({ model: "tools" });
    expect(show.template).toBe(toolsTemplate);
    expect(show.capabilities).toEqual(["completion", "tools"]);
    expect(show.modelfile).toContain(`TEMPLATE """${toolsTemplate}"""`);
    const missing = await failure(client().show({ model: "nope" }));
    expect(missing?.status_code).toBe(404);
    expect(missing?.error).toContain("nope");
  });
});

describe("options.num_ctx", () => {
  const long = "once upon a time there was a little dog ".repeat(30); // ~270 tokens: more than a 256-token context
  test("a larger context than the model's is made for the request, sharing the weights; past the trained length is a 400", async () => {
    const refused = await generate({ prompt: long, raw: true, stream: false, options: { num_predict: 2 } });
    expect(refused.status).toBe(400);
    expect((await bodyOf(refused)).error).toContain("prompt too long");
    const served = await bodyOf(generate({ prompt: long, raw: true, stream: false, options: { num_predict: 2, num_ctx: 1024 } }));
    expect(served).toMatchObject({ done: true, eval_count: 2 });
    const contexts = server.engine
      .loadedModels()
      .filter((m) => m.name === "demo")
      .map((m) => m.contextSize);
    expect(contexts).toContain(1024);
    expect(server.logs.some((l) => l.includes("loaded model demo with a 1024-token context"))).toBe(true);
    const ps = await client().ps();
    expect(ps.models.filter((m) => m.name === "demo:latest").map((m) => (m as { context_length?: number }).context_length)).toContain(1024);
    // A load request (no prompt) with a num_ctx no loaded context holds loads one, as Ollama loads a runner with it.
    expect(await bodyOf(generate({ prompt: "", options: { num_ctx: 1536 } }))).toMatchObject({ done: true, done_reason: "load" });
    expect(server.engine.loadedModels().some((m) => m.name === "demo" && m.contextSize === 1536)).toBe(true);
    const tooBig = await generate({ prompt: "hi", stream: false, options: { num_ctx: 4096 } });
    expect(tooBig.status).toBe(400);
    expect((await bodyOf(tooBig)).error).toBe('options.num_ctx 4096 is more than model "demo" was trained with (2048 tokens)');
  });

  test("a smaller one limits the request to that many tokens, on the model's own context", async () => {
    const prompt = "once upon a time";
    const small = await bodyOf(generate({ prompt, raw: true, stream: false, options: { ...greedy, num_predict: 500, num_ctx: 64 } }));
    expect(small.done_reason).toBe("length");
    expect(small.prompt_eval_count + small.eval_count).toBeLessThanOrEqual(64);
    const whole = await bodyOf(generate({ prompt, raw: true, stream: false, options: { ...greedy, num_predict: 500 } }));
    expect(whole.eval_count).toBeGreaterThan(small.eval_count);
    expect(whole.response.startsWith(small.response)).toBe(true);
    expect((await generate({ prompt: long, raw: true, stream: false, options: { num_ctx: 64 } })).status).toBe(400);
  });

  test("contexts of one model count once against max_loaded_models and are unloaded together", async () => {
    await using small = await startTestServer(
      { a: { source: "synthetic:demo", context: 256, parallel: 1 }, b: { source: "synthetic:demo", context: 256, parallel: 1 } },
      { top: { max_loaded_models: 1 } },
    );
    const run = (model: string, options: object) =>
      bodyOf(postJson(`${small.url}/api/generate`, { model, prompt: "hi", stream: false, options: { num_predict: 1, ...options } }));
    await run("a", {});
    await run("a", { num_ctx: 512 });
    expect(small.engine.loadedModels().map((m) => [m.name, m.contextSize])).toEqual([
      ["a", 256],
      ["a", 512],
    ]);
    await run("b", {});
    expect(small.engine.loadedModels().map((m) => m.name)).toEqual(["b"]);
  });
});

test("under a tight memory budget, the model's idle context makes room for a larger one, keeping the weights", async () => {
  // synthetic:demo's estimates: weights 0.2 MB, a 256-token context 1.6 MB, a 1024-token one 3.5 MB: one context fits.
  await using tight = await startTestServer(
    { a: { source: "synthetic:demo", context: 256, parallel: 1 } },
    { top: { memory_budget: "4.3MB" } },
  );
  const run = (options: object) =>
    postJson(`${tight.url}/api/generate`, { model: "a", prompt: "hi", stream: false, options: { num_predict: 1, ...options } });
  expect((await run({})).status).toBe(200);
  expect((await run({ num_ctx: 1024 })).status).toBe(200);
  expect(tight.engine.loadedModels().map((m) => m.contextSize)).toEqual([1024]);
  expect(tight.logs.filter((l) => l.includes("loaded model a")).length).toBe(2);
});

describe("/api/generate fields", () => {
  test("context: the done line carries the conversation's tokens; sent back, the next prompt continues it from the cache", async () => {
    const first = await bodyOf(generate({ prompt: "Tell me a story", stream: false, options: { ...greedy, num_predict: 5 } }));
    expect(first.context.every((t: unknown) => Number.isInteger(t))).toBe(true);
    // The templated prompt's tokens, then the generated ones.
    expect(first.context.length).toBeGreaterThan(first.eval_count + 4);
    const generated = await server.engine.detokenize("demo", first.context.slice(-first.eval_count));
    expect(generated.trim()).toBe(first.response.trim());
    const next = await bodyOf(
      generate({ prompt: "And then?", context: first.context, stream: false, options: { ...greedy, num_predict: 3 } }),
    );
    expect(next.context.slice(0, first.context.length)).toEqual(first.context);
    // The continuation is not a second sequence: no second beginning-of-sequence token after the first exchange.
    expect(first.context[0]).toBe(1);
    expect(next.context[first.context.length]).not.toBe(1);
    // Only the new turn is evaluated: the sequence still holds the first exchange.
    expect(next.prompt_eval_count).toBeLessThan(next.context.length - first.context.length);
    const streamed = (await readChunks(await generate({ prompt: "Tell me a story", options: { ...greedy, num_predict: 5 } }))).text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(streamed.at(-1).context).toEqual(first.context);
    expect(streamed.slice(0, -1).every((line) => line.context === undefined)).toBe(true);
    // Raw prompts have no template and no context, as in Ollama.
    const raw = await bodyOf(generate({ prompt: "Tell me", raw: true, stream: false, options: { num_predict: 2 } }));
    expect(raw).not.toHaveProperty("context");
    const rawWithContext = await generate({ prompt: "Tell me", raw: true, context: first.context });
    expect(rawWithContext.status).toBe(400);
    expect((await bodyOf(rawWithContext)).error).toBe("raw: raw mode does not support template, system, or context");
    expect((await generate({ prompt: "x", context: [999_999] })).status).toBe(400);
  });

  test("context through the official client", async () => {
    const first = await client().generate({ model: "demo", prompt: "Tell me a story", options: { ...greedy, num_predict: 4 } });
    expect(first.context.length).toBeGreaterThan(4);
    const next = await client().generate({ model: "demo", prompt: "More", context: first.context, options: { num_predict: 2 } });
    expect(next.context.slice(0, first.context.length)).toEqual(first.context);
  });

  test("suffix fills in the middle on a model with FIM tokens, and is a 400 naming it on one without", async () => {
    const filled = await client().generate({ model: "fim", prompt: "def add(a, b):", suffix: "return c", options: { num_predict: 4 } });
    expect(filled.done).toBe(true);
    expect(filled.eval_count).toBeGreaterThan(0);
    const refused = await generate({ prompt: "def add(a, b):", suffix: "return c" });
    expect(refused.status).toBe(400);
    expect((await bodyOf(refused)).error).toContain('suffix: model "demo" cannot fill in the middle');
  });

  test("logprobs and top_logprobs: Ollama's shape, per streamed line and in full without streaming", async () => {
    const options = { ...greedy, num_predict: 6 };
    const whole = await bodyOf(generate({ prompt: "Tell me a story", stream: false, logprobs: true, top_logprobs: 3, options }));
    expect(whole.logprobs).toHaveLength(whole.eval_count);
    for (const entry of whole.logprobs) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0].logprob).toBeGreaterThanOrEqual(entry.top_logprobs[2].logprob);
      if (entry.token !== "") expect(Buffer.from(entry.bytes).toString()).toBe(entry.token);
    }
    // Greedy: the chosen token is the most likely one.
    expect(whole.logprobs[0].token).toBe(whole.logprobs[0].top_logprobs[0].token);
    const lines = (await readChunks(await generate({ prompt: "Tell me a story", logprobs: true, options }))).text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    for (const line of lines.slice(0, -1)) expect(line.logprobs.map((l: { token: string }) => l.token).join("")).toBe(line.response);
    expect(lines.slice(0, -1).flatMap((line) => line.logprobs.map((l: { token: string }) => l.token))).toEqual(
      whole.logprobs.map((l: { token: string }) => l.token),
    );
    expect(lines[0].logprobs[0]).not.toHaveProperty("top_logprobs");
    expect((await generate({ prompt: "x", logprobs: true, top_logprobs: 21 })).status).toBe(400);
  });

  test("images, template and typical_p are refused by name; runner options llamaport does not use are accepted", async () => {
    const images = await failure(client().generate({ model: "demo", prompt: "what is this?", images: [new Uint8Array([1, 2, 3])] }));
    expect(images?.status_code).toBe(400);
    expect(images?.error).toBe('images: "demo" does not support images: llamaport runs text-only models (no vision)');
    const inChat = await chat({ messages: [{ role: "user", content: "look", images: ["aGk="] }] });
    expect(inChat.status).toBe(400);
    expect((await bodyOf(inChat)).error).toStartWith("messages[0].images:");
    expect(
      (await chat({ stream: false, messages: [{ role: "user", content: "hi", images: [] }], options: { num_predict: 1 } })).status,
    ).toBe(200);
    const template = await generate({ prompt: "hi", template: "{{ .Prompt }}" });
    expect(template.status).toBe(400);
    expect((await bodyOf(template)).error).toStartWith("template: Ollama's Go templates are not supported");
    const typical = await generate({ prompt: "hi", options: { typical_p: 0.5 } });
    expect(typical.status).toBe(400);
    expect((await bodyOf(typical)).error).toStartWith("options.typical_p:");
    const accepted = await generate({
      prompt: "hi",
      stream: false,
      options: {
        num_predict: 1,
        typical_p: 1,
        num_thread: 8,
        num_gpu: 99,
        num_batch: 512,
        use_mmap: true,
        num_keep: 4,
        mirostat: 0,
        seed: -1,
      },
    });
    expect(accepted.status).toBe(200);
  });
});

describe("null", () => {
  test("is as absent for every optional field, as Ollama's Go decoding takes it (clients that write None get an answer)", async () => {
    const options = { temperature: 0, num_predict: 4 };
    const nulls = { stream: false, keep_alive: null, format: null, think: null, logprobs: null, top_logprobs: null, truncate: null };
    const nullOptions = { ...options, top_p: null, top_k: null, seed: null, stop: null, num_ctx: null, repeat_penalty: null };
    const plain = await bodyOf(generate({ prompt: "Once upon a time", stream: false, options }));
    const generated = await generate({
      prompt: "Once upon a time",
      ...nulls,
      suffix: null,
      system: null,
      context: null,
      images: null,
      options: nullOptions,
    });
    expect(generated.status).toBe(200);
    expect((await bodyOf(generated)).response).toBe(plain.response);
    const message = { role: "user", content: "Once upon a time" };
    const chatted = await chat({ ...nulls, tools: null, options: nullOptions, messages: [{ ...message, images: null, tool_calls: null }] });
    expect(chatted.status).toBe(200);
    expect((await bodyOf(chatted)).message.content).toBe(
      (await bodyOf(chat({ stream: false, options, messages: [message] }))).message.content,
    );
    const embedded = await postJson(`${server.url}/api/embed`, {
      model: "demo",
      input: "hi",
      truncate: null,
      dimensions: null,
      options: null,
    });
    expect((await bodyOf(embedded)).embeddings).toHaveLength(1);
  });
});

describe("think", () => {
  test("a model without thinking takes think: false and refuses true or a level, in Ollama's words", async () => {
    expect(
      (await chat({ stream: false, think: false, messages: [{ role: "user", content: "hi" }], options: { num_predict: 1 } })).status,
    ).toBe(200);
    for (const think of [true, "high"]) {
      const refused = await generate({ prompt: "hi", think });
      expect(refused.status).toBe(400);
      expect(await bodyOf(refused)).toEqual({ error: '"demo" does not support thinking' });
    }
    const viaClient = await failure(client().chat({ model: "llama3:8b", think: true, messages: [{ role: "user", content: "hi" }] }));
    expect(viaClient?.status_code).toBe(400);
    expect(viaClient?.error).toBe('"llama3:8b" does not support thinking');
  });

  test("a thinking model refuses any think setting: llamaport cannot split its reasoning into Ollama's thinking field", async () => {
    for (const think of [true, false]) {
      const refused = await postJson(`${server.url}/api/generate`, { model: "thinker", prompt: "hi", think });
      expect(refused.status).toBe(400);
      expect((await bodyOf(refused)).error).toStartWith("think: llamaport does not separate a thinking model's reasoning");
    }
    const plain = await postJson(`${server.url}/api/generate`, {
      model: "thinker",
      prompt: "hi",
      stream: false,
      options: { num_predict: 1 },
    });
    expect(plain.status).toBe(200);
  });
});

describe("embeddings", () => {
  test("/api/embeddings (the older route) returns the model's vector as it is; /api/embed the same direction, unit length", async () => {
    const prompt = "the little dog ran to the sea";
    const legacy = await client().embeddings({ model: "demo", prompt });
    const embed = await client().embed({ model: "demo", input: prompt });
    const vector = embed.embeddings[0]!;
    expect(legacy.embedding).toHaveLength(vector.length);
    const norm = Math.hypot(...legacy.embedding);
    expect(Math.abs(norm - 1)).toBeGreaterThan(1e-3);
    expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    legacy.embedding.forEach((value, i) => {
      expect(value / norm).toBeCloseTo(vector[i]!, 5);
    });
    expect(await bodyOf(postJson(`${server.url}/api/embeddings`, { model: "demo", prompt: "" }))).toEqual({ embedding: [] });
  });

  test("/api/embed: dimensions must be the model's own width; lists of inputs", async () => {
    const two = await client().embed({ model: "demo", input: ["a dog", "a cat"], dimensions: 64 });
    expect(two.embeddings).toHaveLength(2);
    expect(two.prompt_eval_count).toBeGreaterThan(0);
    const shorter = await failure(client().embed({ model: "demo", input: "a dog", dimensions: 32 }));
    expect(shorter?.status_code).toBe(400);
    expect(shorter?.error).toStartWith("dimensions must be 64");
  });
});

describe("model management routes", () => {
  test("create, copy, delete, push and blobs say models come from models.yaml (501), not a bare 404", async () => {
    const copy = await failure(client().copy({ source: "demo", destination: "demo2" }));
    expect(copy?.status_code).toBe(501);
    expect(copy?.error).toContain("edit that file");
    const remove = await failure(client().delete({ model: "demo" }));
    expect(remove?.status_code).toBe(501);
    expect(remove?.error).toStartWith("deleting a model is not supported: llamaport serves the models listed in models.yaml");
    for (const path of ["/api/create", "/api/push", "/api/blobs/sha256:00"]) {
      const response = await postJson(`${server.url}${path}`, { model: "demo" });
      expect(response.status).toBe(501);
      expect((await bodyOf(response)).error).toContain("models.yaml");
    }
    // The engine still lists the model: nothing was changed.
    expect((await client().list()).models.some((m) => m.name === "demo:latest")).toBe(true);
  });
});

test("the model is named in responses as the client wrote it, as Ollama echoes it", async () => {
  const tagged = await bodyOf(generate({ model: "demo:latest", prompt: "hi", stream: false, options: { num_predict: 1 } }));
  expect(tagged.model).toBe("demo:latest");
  const lines = (
    await readChunks(await chat({ model: "llama3:8b", messages: [{ role: "user", content: "hi" }], options: { num_predict: 2 } }))
  ).text
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  expect(lines.every((line) => line.model === "llama3:8b")).toBe(true);
});
