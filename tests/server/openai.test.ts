/** The OpenAI protocol end to end: real server, real engine, real GGUF models, raw HTTP and the official `openai` client. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import {
  bodyOf,
  hasSharedModels,
  randomLlama2Model,
  noteSharedModels,
  postJson,
  readChunks,
  startTestServer,
  storiesModel,
  type TestServer,
} from "../support/testServer.ts";

noteSharedModels("tests/server/openai.test.ts");

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", aliases: ["Meta-Llama-3-8B-Instruct"], context: 512, parallel: 2 },
    vocab32k: { source: "synthetic:tiny-32k", context: 512, parallel: 1 },
    // One sequence and a queue of one: a request's several prompts must take turns, not fill the queue.
    turns: { source: "synthetic:demo", context: 256, parallel: 1, max_queue: 1 },
    ...(hasSharedModels
      ? { stories: { source: storiesModel, context: 512, parallel: 2 }, llama2: { source: randomLlama2Model, context: 512, parallel: 1 } }
      : {}),
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const chat = (body: Record<string, unknown>) =>
  postJson(`${server.url}/v1/chat/completions`, { messages: [{ role: "user", content: "Once upon a time" }], ...body });

/** Parses an SSE body strictly: every event is `data: ...` (optionally after `event: ...`) followed by a blank line. */
function parseSse(text: string): { event?: string; data: string }[] {
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((block) => {
      const lines = block.split("\n");
      const event = lines[0]!.startsWith("event: ") ? lines.shift()!.slice(7) : undefined;
      expect(lines).toHaveLength(1);
      expect(lines[0]!.startsWith("data: ")).toBe(true);
      return { event, data: lines[0]!.slice(6) };
    });
}

const models = hasSharedModels ? ["demo", "stories"] : ["demo"];

describe.each(models)("POST /v1/chat/completions on %s", (model) => {
  test("stream: exact SSE framing, one id, role first, finish chunk, then event: done / [DONE]", async () => {
    const response = await chat({ model, stream: true, max_tokens: 12, temperature: 0 });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/event-stream");
    const events = parseSse((await readChunks(response)).text);
    const last = events.pop()!;
    expect(last).toEqual({ event: "done", data: "[DONE]" });
    const chunks = events.map((e) => {
      expect(e.event).toBeUndefined();
      return JSON.parse(e.data);
    });
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    const ids = new Set(chunks.map((c) => c.id));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toStartWith("chatcmpl-");
    for (const c of chunks) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.model).toBe(model);
      expect(c.system_fingerprint).toMatch(/^b\d+-[0-9a-f]{7}$/); // llama-server's build id shape
      expect(c.created).toBeNumber();
    }
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
    const final = chunks.at(-1);
    expect(final.choices[0].delta).toEqual({});
    expect(final.choices[0].finish_reason).toBe("length");
    for (const c of chunks.slice(0, -1)) {
      expect(c.choices[0].finish_reason).toBeNull();
      expect(c.choices[0].delta.content).toBeString();
    }
  });

  test("non-stream: chat.completion with message, finish_reason and usage", async () => {
    const response = await chat({ model, max_tokens: 7, temperature: 0 });
    expect(response.status).toBe(200);
    const body = await bodyOf(response);
    expect(body.object).toBe("chat.completion");
    expect(body.model).toBe(model);
    expect(body.choices[0].message.role).toBe("assistant");
    expect(body.choices[0].message.content.length).toBeGreaterThan(0);
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.usage.completion_tokens).toBe(7);
    expect(body.usage.prompt_tokens).toBeGreaterThan(3);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 7);
  });

  test("temperature 0 is deterministic, and so is a fixed seed", async () => {
    const text = async (body: Record<string, unknown>) =>
      (await bodyOf(chat({ model, max_tokens: 24, ...body }))).choices[0].message.content;
    expect(await text({ temperature: 0 })).toBe(await text({ temperature: 0 }));
    const seeded = await text({ temperature: 1, seed: 1234 });
    expect(await text({ temperature: 1, seed: 1234 })).toBe(seeded);
  });

  test("a stop string ends generation before it, with finish_reason stop", async () => {
    const full: string = (await bodyOf(chat({ model, max_tokens: 40, temperature: 0 }))).choices[0].message.content;
    const words = full.split(" ").filter((w) => w.length > 2);
    const stop = words[Math.floor(words.length / 2)]!;
    const body = await bodyOf(chat({ model, max_tokens: 40, temperature: 0, stop: [stop] }));
    expect(body.choices[0].finish_reason).toBe("stop");
    expect(body.choices[0].message.content).toBe(full.slice(0, full.indexOf(stop)));
  });
});

test("text arrives incrementally: the first chunk long before the last", async () => {
  const response = await chat({ model: models.at(-1), stream: true, max_tokens: 200, temperature: 0, ignore_eos: true });
  const { times, text } = await readChunks(response);
  expect(text.split("\n\n").length).toBeGreaterThan(100);
  expect(times.length).toBeGreaterThan(5);
  expect(times.at(-1)! - times[0]!).toBeGreaterThan(0);
  // Not all at once: the first read happens before most of the data exists.
  expect(times.filter((t) => t > times[0]!).length).toBeGreaterThan(2);
});

test("response_format json_schema constrains the output to the schema", async () => {
  const schema = {
    type: "object",
    properties: { ok: { type: "boolean" }, name: { type: "string", maxLength: 8 } },
    required: ["ok", "name"],
  };
  const body = await bodyOf(
    chat({ model: "demo", max_tokens: 200, response_format: { type: "json_schema", json_schema: { name: "x", schema } } }),
  );
  const value = JSON.parse(body.choices[0].message.content);
  expect(typeof value.ok).toBe("boolean");
  expect(typeof value.name).toBe("string");
  const invalid = await chat({ model: "demo", response_format: { type: "yaml" } });
  expect(invalid.status).toBe(400);
  expect((await bodyOf(invalid)).error.param).toStartWith("response_format");
});

// The writer's 32k vocabulary always; the real llama-2 tokenizer too when ../shared is there.
test.each(hasSharedModels ? ["vocab32k", "llama2"] : ["vocab32k"])(
  "a model with a 32k vocabulary (%s) streams and counts tokens",
  async (model) => {
    const body = await bodyOf(chat({ model, max_tokens: 6, temperature: 0 }));
    expect(body.usage.completion_tokens).toBe(6);
    expect(body.usage.prompt_tokens).toBeGreaterThan(4);
    const streamed = await readChunks(await chat({ model, max_tokens: 6, temperature: 0, stream: true }));
    const text = streamed.text
      .split("\n\n")
      .filter((e) => e.startsWith("data: {"))
      .map((e) => JSON.parse(e.slice(6)).choices[0].delta.content ?? "")
      .join("");
    expect(text).toBe(body.choices[0].message.content);
  },
);

test("an alias resolves to the real model name", async () => {
  const body = await bodyOf(chat({ model: "Meta-Llama-3-8B-Instruct", max_tokens: 3 }));
  expect(body.model).toBe("demo");
});

test("GET /v1/models lists each model once, aliases as a field, with created and owned_by", async () => {
  const body = await bodyOf(fetch(`${server.url}/v1/models`));
  expect(body.object).toBe("list");
  const ids = body.data.map((m: { id: string }) => m.id);
  expect(ids).toContain("demo");
  expect(ids).not.toContain("Meta-Llama-3-8B-Instruct");
  expect(new Set(ids).size).toBe(ids.length);
  const demo = body.data.find((m: { id: string }) => m.id === "demo");
  expect(demo).toEqual({
    id: "demo",
    object: "model",
    created: expect.any(Number),
    owned_by: "llamaport",
    aliases: ["Meta-Llama-3-8B-Instruct"],
  });
  expect(demo.created).toBeGreaterThan(1_600_000_000); // the GGUF file's time, not 0
  // An alias finds its model.
  expect(await bodyOf(fetch(`${server.url}/v1/models/Meta-Llama-3-8B-Instruct`))).toEqual(demo);
  expect((await fetch(`${server.url}/v1/models/nope`)).status).toBe(404);
});

describe("the official openai client", () => {
  const client = () => new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "unused" });

  test("non-stream", async () => {
    const completion = await client().chat.completions.create({
      model: models.at(-1)!,
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 10,
      temperature: 0,
    });
    expect(completion.choices[0]!.message.content!.length).toBeGreaterThan(0);
    expect(completion.choices[0]!.finish_reason).toBe("length");
    expect(completion.usage!.completion_tokens).toBe(10);
  });

  test("stream, with usage", async () => {
    const stream = await client().chat.completions.create({
      model: models.at(-1)!,
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 10,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    const whole = await client().chat.completions.create({
      model: models.at(-1)!,
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 10,
      temperature: 0,
    });
    expect(text).toBe(whole.choices[0]!.message.content!);
    expect(finish).toBe("length");
    expect(usage!.completion_tokens).toBe(10);
  });

  test("legacy completions: raw prompt", async () => {
    const completion = await client().completions.create({
      model: models.at(-1)!,
      prompt: "Once upon a time",
      max_tokens: 8,
      temperature: 0,
    });
    expect(completion.choices[0]!.text.length).toBeGreaterThan(0);
    expect(completion.usage!.completion_tokens).toBe(8);
  });

  test("legacy completions: several prompts give one choice each", async () => {
    const completion = await client().completions.create({
      model: models.at(-1)!,
      prompt: ["Once upon a time", "The dog"],
      max_tokens: 4,
      temperature: 0,
    });
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(completion.usage!.completion_tokens).toBe(8);
    const single = await client().completions.create({ model: models.at(-1)!, prompt: "The dog", max_tokens: 4, temperature: 0 });
    expect(completion.choices[1]!.text).toBe(single.choices[0]!.text);
  });

  test("legacy completions: more prompts than the model's sequences and queue take turns (no 503); over 2,048 completions is a 400", async () => {
    const prompts = Array.from({ length: 12 }, (_, i) => `Prompt number ${i}`);
    const completion = await client().completions.create({ model: "turns", prompt: prompts, max_tokens: 2, temperature: 0 });
    expect(completion.choices.map((c) => c.index)).toEqual(prompts.map((_, i) => i));
    expect(completion.usage!.completion_tokens).toBe(24);
    const tooMany = client().completions.create({ model: "turns", prompt: Array(1025).fill("x"), n: 2, max_tokens: 1 });
    const error = await tooMany.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("prompt");
  });

  test("embeddings with the SDK's defaults (it asks for base64): one unit-length vector of the model's width per input", async () => {
    // What went over the wire: the SDK asks for base64 unless told otherwise (this version also copes with floats,
    // older ones decoded them as base64 into 16 nonsense numbers).
    const wire: any[] = [];
    const recording = new OpenAI({
      baseURL: `${server.url}/v1`,
      apiKey: "unused",
      fetch: async (url: string | URL | Request, init?: RequestInit) => {
        const response = await fetch(url, init);
        wire.push({ request: JSON.parse(String(init?.body)), response: await response.clone().json() });
        return response;
      },
    });
    const result = await recording.embeddings.create({ model: "demo", input: ["hello world", "goodbye"] });
    expect(wire[0].request.encoding_format).toBe("base64");
    expect(wire[0].response.data[0].embedding).toBeString();
    expect(result.data).toHaveLength(2);
    // The writer's demo model is 64 wide; floats sent where base64 was asked for decode to 16 nonsense numbers.
    expect(result.data.map((d) => d.embedding.length)).toEqual([64, 64]);
    for (const { embedding } of result.data) expect(Math.hypot(...embedding)).toBeCloseTo(1, 5);
    const again = await client().embeddings.create({ model: "demo", input: "hello world" });
    expect(again.data[0]!.embedding).toEqual(result.data[0]!.embedding);
    const floats = await client().embeddings.create({ model: "demo", input: "hello world", encoding_format: "float" });
    expect(floats.data[0]!.embedding).toEqual(result.data[0]!.embedding);
    expect(result.usage.prompt_tokens).toBeGreaterThan(0);
  });

  test("legacy completions continue the prompt with its leading space", async () => {
    const completion = await client().completions.create({ model: models.at(-1)!, prompt: "Once upon a", max_tokens: 4, temperature: 0 });
    expect(completion.choices[0]!.text).toStartWith(" ");
    if (hasSharedModels) expect(completion.choices[0]!.text).toStartWith(" time");
  });

  test("log probabilities in chat and legacy completions, as the SDK types them", async () => {
    const chat = await client().chat.completions.create({
      model: "demo",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 5,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content.map((c) => c.token).join("")).toBe(chat.choices[0]!.message.content!);
    expect(content[0]!.top_logprobs).toHaveLength(2);
    const legacy = await client().completions.create({ model: "demo", prompt: "the", max_tokens: 5, temperature: 0, logprobs: 2 });
    expect(legacy.choices[0]!.logprobs!.tokens!.join("")).toBe(legacy.choices[0]!.text);
  });

  test("an unknown model is a NotFoundError naming it and the known models", async () => {
    const error = await client()
      .chat.completions.create({ model: "gpt-9", messages: [{ role: "user", content: "hi" }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect((error as Error).message).toContain("gpt-9");
    expect((error as Error).message).toContain("demo");
  });
});
