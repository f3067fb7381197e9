/** The Ollama protocol end to end: real server and engine, exact NDJSON framing, and the official `ollama` client. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Ollama } from "ollama";
import {
  bodyOf,
  hasSharedModels,
  noteSharedModels,
  postJson,
  readChunks,
  startTestServer,
  storiesModel,
  type TestServer,
} from "../support/testServer.ts";

noteSharedModels("tests/server/ollama.test.ts");

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", aliases: ["Meta-Llama-3-8B-Instruct"], context: 512, parallel: 2 },
    ...(hasSharedModels ? { stories: { source: storiesModel, context: 512, parallel: 2 } } : {}),
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const model = hasSharedModels ? "stories" : "demo";
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const generate = (body: Record<string, unknown>) => postJson(`${server.url}/api/generate`, { model, prompt: "Once upon a time", ...body });

describe("POST /api/generate", () => {
  test("streams by default: one JSON object per line, then a done line with Ollama's stats in nanoseconds", async () => {
    const response = await generate({ options: { num_predict: 9, temperature: 0 } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("application/x-ndjson");
    const { text } = await readChunks(response);
    expect(text.endsWith("\n")).toBe(true);
    const lines = text
      .slice(0, -1)
      .split("\n")
      .map((line) => JSON.parse(line));
    const last = lines.pop();
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(["model", "created_at", "response", "done"]);
      expect(line.model).toBe(model);
      expect(line.created_at).toMatch(rfc3339);
      expect(line.done).toBe(false);
    }
    expect(last).toMatchObject({ model, response: "", done: true, done_reason: "length", eval_count: 9 });
    expect(last.created_at).toMatch(rfc3339);
    for (const key of ["total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_duration"])
      expect(Number.isInteger(last[key])).toBe(true);
    expect(last.total_duration).toBeGreaterThan(last.eval_duration);
    expect(last.prompt_eval_count).toBeGreaterThan(0);
  });

  test("stream: false returns one object with the whole response, equal to the streamed text", async () => {
    const options = { num_predict: 16, temperature: 0 };
    const whole = await bodyOf(generate({ stream: false, options }));
    expect(whole.done).toBe(true);
    expect(whole.eval_count).toBe(16);
    const streamed = (await readChunks(await generate({ options }))).text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).response)
      .join("");
    expect(whole.response).toBe(streamed);
  });

  test("raw and templated prompts differ, and system is used in the template", async () => {
    const options = { num_predict: 12, temperature: 0 };
    // keep_alive 0 unloads after each request, so no prompt prefix is cached and prompt_eval_count is the whole prompt.
    const fresh = { stream: false, options, keep_alive: 0 };
    const raw = await bodyOf(generate({ ...fresh, raw: true }));
    const templated = await bodyOf(generate(fresh));
    const withSystem = await bodyOf(generate({ ...fresh, system: "You are a pirate." }));
    expect(raw.prompt_eval_count).toBeLessThan(templated.prompt_eval_count);
    expect(withSystem.prompt_eval_count).toBeGreaterThan(templated.prompt_eval_count);
  });

  test("options.stop ends the response before the stop string", async () => {
    const full = (await bodyOf(generate({ stream: false, options: { num_predict: 30, temperature: 0 } }))).response as string;
    const stop = full.split(" ").filter((w) => w.length > 2)[3]!;
    const cut = await bodyOf(generate({ stream: false, options: { num_predict: 30, temperature: 0, stop: [stop] } }));
    expect(cut.done_reason).toBe("stop");
    expect(cut.response).toBe(full.slice(0, full.indexOf(stop)));
  });

  test("format: a JSON schema constrains the response; an unknown format string is a 400", async () => {
    const format = { type: "object", properties: { happy: { type: "boolean" } }, required: ["happy"] };
    const body = await bodyOf(generate({ model: "demo", stream: false, format, options: { num_predict: 100 } }));
    expect(typeof JSON.parse(body.response).happy).toBe("boolean");
    expect((await generate({ format: "yaml" })).status).toBe(400);
  });

  test("an empty prompt loads the model and answers done at once", async () => {
    const body = await bodyOf(postJson(`${server.url}/api/generate`, { model: "demo" }));
    expect(body).toMatchObject({ model: "demo", response: "", done: true, done_reason: "load" });
    const ps = await bodyOf(fetch(`${server.url}/api/ps`));
    expect(ps.models.map((m: { name: string }) => m.name)).toContain("demo:latest");
  });
});

test("/api/tags and /api/show report the GGUF header's facts", async () => {
  const tags = await bodyOf(fetch(`${server.url}/api/tags`));
  const demo = tags.models.find((m: { name: string }) => m.name === "demo:latest");
  // synthetic:demo is a 2-layer llama, 64-wide embeddings, a 1000-token vocabulary, Q8_0 weights: 2 x 64 x 1000
  // (embeddings, output) + 64 (norm) + 2 layers x (2 x 64 norms + 2 x 64x64 + 2 x 64x32 attention + 3 x 64x128 FFN).
  expect(demo.details).toEqual({
    parent_model: "",
    format: "gguf",
    family: "llama",
    families: ["llama"],
    parameter_size: "202K",
    quantization_level: "Q8_0",
    context_length: 2048,
    embedding_length: 64,
  });
  expect(demo.size).toBeGreaterThan(100_000);
  const show = await bodyOf(postJson(`${server.url}/api/show`, { model: "demo:latest" }));
  expect(show.details.family).toBe("llama");
  expect(show.model_info).toMatchObject({ "general.architecture": "llama", "llama.context_length": 2048, "llama.block_count": 2 });
  // As Ollama: the name and the chat template are left out of model_info, the parameter count added.
  expect(show.model_info["general.name"]).toBeUndefined();
  expect(show.model_info["general.parameter_count"]).toBe(202_048);
});

describe("the official ollama client", () => {
  const client = () => new Ollama({ host: server.url });

  test("generate, stream and non-stream agree", async () => {
    const options = { num_predict: 10, temperature: 0 };
    const whole = await client().generate({ model, prompt: "Tell me a story", options });
    let streamed = "";
    let final: Awaited<ReturnType<ReturnType<typeof client>["generate"]>> | undefined;
    for await (const part of await client().generate({ model, prompt: "Tell me a story", options, stream: true })) {
      streamed += part.response;
      if (part.done) final = part;
    }
    expect(whole.response!.length).toBeGreaterThan(0);
    expect(streamed).toBe(whole.response!);
    expect(final!.eval_count).toBe(10);
  });

  test("chat, stream and non-stream agree", async () => {
    const messages = [{ role: "user", content: "Tell me a story" }];
    const options = { num_predict: 10, temperature: 0 };
    const whole = await client().chat({ model, messages, options });
    let streamed = "";
    for await (const part of await client().chat({ model, messages, options, stream: true })) streamed += part.message.content;
    expect(whole.message.role).toBe("assistant");
    expect(whole.message.content.length).toBeGreaterThan(0);
    expect(streamed).toBe(whole.message.content);
  });

  test("list shows models and aliases; an unknown model is a 404 error naming it", async () => {
    const names = (await client().list()).models.map((m) => m.name);
    expect(names).toContain("demo:latest");
    expect(names).toContain("Meta-Llama-3-8B-Instruct:latest");
    const error = (await client()
      .generate({ model: "llama9", prompt: "hi" })
      .catch((e: unknown) => e)) as { status_code?: number; error?: string };
    expect(error.status_code).toBe(404);
    expect(error.error).toContain("llama9");
    expect(error.error).toContain("demo");
  });
});
