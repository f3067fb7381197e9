/** Bad input and failures: each protocol's error format and status, no 500s, no hangs, and cancellation that frees the sequence. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bodyOf, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", context: 256, parallel: 2 },
    solo: { source: "synthetic:demo", context: 256, parallel: 1 },
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const chatUrl = () => `${server.url}/v1/chat/completions`;
const generateUrl = () => `${server.url}/api/generate`;
const longText = "once upon a time there was a little dog ".repeat(60);

describe("OpenAI error objects", () => {
  const expectOpenAiError = async (response: Response, status: number, param?: string | null) => {
    expect(response.status).toBe(status);
    const body = await bodyOf(response);
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    expect(body.error.message).toBeString();
    if (param !== undefined) expect(body.error.param).toBe(param);
    return body.error;
  };

  test("malformed JSON -> 400", async () => {
    const error = await expectOpenAiError(await postJson(chatUrl(), '{"model": "demo", "messages": ['), 400, null);
    expect(error.message).toContain("malformed JSON");
  });

  test("a wrong field -> 400 naming it", async () => {
    const error = await expectOpenAiError(
      await postJson(chatUrl(), { model: "demo", messages: [{ role: "user", content: 5 }] }),
      400,
      "messages[0].content",
    );
    expect(error.type).toBe("invalid_request_error");
    await expectOpenAiError(await postJson(chatUrl(), { model: "demo", messages: [] }), 400, "messages");
    await expectOpenAiError(await postJson(chatUrl(), { messages: [{ role: "user", content: "hi" }] }), 400, "model");
    await expectOpenAiError(
      await postJson(chatUrl(), { model: "demo", messages: [{ role: "user", content: "x" }], temperature: "hot" }),
      400,
      "temperature",
    );
    await expectOpenAiError(await postJson(chatUrl(), { model: "demo", messages: [{ role: "user", content: "x" }], n: 3 }), 400, "n");
  });

  test("unknown model -> 404 naming it and listing the known ones", async () => {
    const error = await expectOpenAiError(
      await postJson(chatUrl(), { model: "nope", messages: [{ role: "user", content: "hi" }], stream: true }),
      404,
      "model",
    );
    expect(error.code).toBe("model_not_found");
    expect(error.message).toContain('"nope"');
    expect(error.message).toContain("demo, solo");
  });

  test("prompt longer than the context -> 400 context_length_exceeded, streaming or not", async () => {
    for (const stream of [false, true]) {
      const error = await expectOpenAiError(
        await postJson(chatUrl(), { model: "demo", stream, messages: [{ role: "user", content: longText }] }),
        400,
      );
      expect(error.code).toBe("context_length_exceeded");
      expect(error.message).toContain("prompt too long");
    }
  });
});

test("an engine problem names the field as each protocol's clients wrote it", async () => {
  // top_p 0 passes every schema (each allows 0) and is refused by the engine, which names it `topP`.
  const openai = await bodyOf(postJson(chatUrl(), { model: "demo", messages: [{ role: "user", content: "x" }], top_p: 0 }));
  expect(openai.error.param).toBe("top_p");
  expect(openai.error.message).toStartWith("top_p must be in (0, 1]");
  const ollama = await bodyOf(postJson(generateUrl(), { model: "demo", prompt: "x", options: { top_p: 0 } }));
  expect(ollama.error).toStartWith("options.top_p must be in (0, 1]");
  const anthropic = await bodyOf(
    postJson(`${server.url}/v1/messages`, { model: "demo", max_tokens: 5, messages: [{ role: "user", content: "x" }], top_p: 0 }),
  );
  expect(anthropic.error.message).toStartWith("top_p must be in (0, 1]");
});

describe("Ollama error strings", () => {
  test("malformed JSON, wrong field, unknown model, too long", async () => {
    const cases: [unknown, number, string][] = [
      ["{oops", 400, "malformed JSON"],
      [{ model: "demo", prompt: "hi", options: { temperature: "warm" } }, 400, "options.temperature"],
      [{ model: "demo", prompt: 42 }, 400, "prompt"],
      [{ model: "ghost", prompt: "hi" }, 404, "ghost"],
      [{ model: "demo", prompt: longText, raw: true }, 400, "prompt too long"],
    ];
    for (const [body, status, fragment] of cases) {
      const response = await postJson(generateUrl(), body);
      expect(response.status).toBe(status);
      const json = await bodyOf(response);
      expect(Object.keys(json)).toEqual(["error"]);
      expect(json.error).toBeString();
      expect(json.error).toContain(fragment);
    }
  });
});

test("garbage never produces a 500 and the server keeps serving", async () => {
  const bodies = [
    "",
    "null",
    "[]",
    "42",
    '"str"',
    '{"model": null}',
    '{"model": "demo", "messages": null}',
    '{"model":"demo","messages":[{"role":"user"}]}',
    "\u0000\u0001",
  ];
  // Ollama ignores unknown fields, so these are bad only for OpenAI.
  const openAiOnly = [
    '{"model":"demo","messages":[{"role":"user","content":"x"}],"max_tokens":-5}',
    '{"model":"demo","messages":[{"role":"user","content":"x"}],"stop":[1,2]}',
  ];
  for (const url of [chatUrl(), generateUrl(), `${server.url}/api/chat`, `${server.url}/v1/completions`])
    for (const body of url.includes("/v1/") ? [...bodies, ...openAiOnly] : bodies) {
      const response = await postJson(url, body);
      // For Ollama a body with a model and no prompt/messages is a valid "load the model" request (null is none, as in Go).
      const loads = url.endsWith("/api/generate") || (url.endsWith("/api/chat") && body.includes('"messages": null'));
      if (response.status === 200 && url.includes("/api/") && /"model": ?"demo"/.test(body) && loads) continue;
      expect(`${url} ${body} -> ${response.status}`).toEndWith(`${response.status >= 400 ? response.status : "4xx"}`);
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      await response.text();
    }
  const ok = await postJson(generateUrl(), { model: "demo", prompt: "hi", stream: false, options: { num_predict: 2 } });
  expect(ok.status).toBe(200);
});

test("embeddings: empty input and input longer than the context are 400s, not 500s (Ollama: as Ollama answers them)", async () => {
  const empty = await postJson(`${server.url}/v1/embeddings`, { model: "demo", input: [] });
  expect(empty.status).toBe(400);
  const long = await postJson(`${server.url}/v1/embeddings`, { model: "demo", input: longText.repeat(4) });
  expect(long.status).toBe(400);
  expect((await bodyOf(long)).error.code).toBe("context_length_exceeded");
  // Ollama loads the model for an empty input and answers with no embeddings; it cuts a long input unless told not to.
  expect(await bodyOf(postJson(`${server.url}/api/embed`, { model: "demo", input: "" }))).toEqual({ model: "demo", embeddings: [] });
  const cut = await bodyOf(postJson(`${server.url}/api/embed`, { model: "demo", input: longText.repeat(4) }));
  expect(cut.embeddings).toHaveLength(1);
  const refused = await postJson(`${server.url}/api/embed`, { model: "demo", input: longText.repeat(4), truncate: false });
  expect(refused.status).toBe(400);
  expect((await bodyOf(refused)).error).toContain("the embedding context holds");
});

test("unknown paths are a 404 in the format of the protocol that owns the prefix", async () => {
  const openai = await fetch(`${server.url}/v1/nothing`);
  expect(openai.status).toBe(404);
  expect(await bodyOf(openai)).toEqual({
    error: { message: "no route for GET /v1/nothing", type: "invalid_request_error", param: null, code: null },
  });
  const anthropic = await postJson(`${server.url}/v1/messages/nothing`, {});
  expect(await bodyOf(anthropic)).toEqual({
    type: "error",
    error: { type: "not_found_error", message: "no route for POST /v1/messages/nothing" },
  });
  const ollama = await fetch(`${server.url}/api/nothing`);
  expect(await bodyOf(ollama)).toEqual({ error: "no route for GET /api/nothing" });
  const nobody = await fetch(`${server.url}/elsewhere`);
  expect(nobody.status).toBe(404);
  expect(await bodyOf(nobody)).toEqual({ error: { code: "not_found", message: "no route for GET /elsewhere" } });
});

describe("concurrency and cancellation", () => {
  const solo = () => server.engine.loadedModels().find((m) => m.name === "solo");
  const longGeneration = (signal?: AbortSignal) =>
    postJson(generateUrl(), { model: "solo", prompt: "go", raw: true, options: { num_predict: 100000, temperature: 0.8 } }, { signal });

  test("more concurrent requests than sequences wait their turn instead of failing", async () => {
    const responses = await Promise.all(
      Array.from({ length: 4 }, () => postJson(generateUrl(), { model: "solo", prompt: "hi", stream: false, options: { num_predict: 8 } })),
    );
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect((await bodyOf(response)).eval_count).toBe(8);
    }
  });

  test("a client that disconnects mid-stream frees its sequence at once", async () => {
    const controller = new AbortController();
    const response = await longGeneration(controller.signal);
    const reader = response.body!.getReader();
    await reader.read();
    expect(solo()).toMatchObject({ activeSequences: 1, queuedRequests: 0 });
    controller.abort();
    await reader.cancel().catch(() => {});
    await waitFor(
      async () => solo(),
      (s) => s?.activeSequences === 0,
    );
    // The only sequence of "solo" must be free again: a short request finishes quickly instead of waiting forever.
    const started = performance.now();
    const next = await postJson(
      generateUrl(),
      { model: "solo", prompt: "hi", stream: false, options: { num_predict: 4 } },
      { signal: AbortSignal.timeout(10_000) },
    );
    expect(next.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  test("a client that disconnects while queued gives up its place", async () => {
    const first = new AbortController();
    const running = await longGeneration(first.signal);
    const queued = new AbortController();
    const waiting = longGeneration(queued.signal).catch((e: unknown) => e);
    await waitFor(
      async () => solo(),
      (s) => s?.queuedRequests === 1,
    );
    queued.abort();
    expect(await waiting).toBeInstanceOf(Error);
    // Its place is given up at once, while the first request still runs.
    await waitFor(
      async () => solo(),
      (s) => s?.queuedRequests === 0,
    );
    expect(solo()?.activeSequences).toBe(1);
    first.abort();
    await running.body?.cancel().catch(() => {});
    const next = await postJson(
      generateUrl(),
      { model: "solo", prompt: "hi", stream: false, options: { num_predict: 4 } },
      { signal: AbortSignal.timeout(10_000) },
    );
    expect(next.status).toBe(200);
  });
});

test("streams framed by the host end cleanly when the plugin's stream fails mid-way", async () => {
  // Drives the real openai plugin through the host with an engine that fails after the first token.
  const { runRoute } = await import("../../src/server/runRoute.ts");
  const { checkPluginDefinition } = await import("../../src/plugins/checkPluginDefinition.ts");
  const { LlamaportError } = await import("../../src/engine/EngineError.ts");
  const { default: openai } = await import("../../plugins/openai.ts");
  const { default: ollama } = await import("../../plugins/ollama.ts");
  const failing = () => ({
    model: "m",
    async *[Symbol.asyncIterator]() {
      yield { type: "text", text: "Hello" };
      throw new LlamaportError("unavailable", "model crashed");
    },
  });
  const failingEngine = { findModel: async () => undefined, chat: failing, complete: failing } as never;
  const log = { info() {}, warn() {}, error() {} };
  const serve = async (plugin: typeof openai, path: string, body: unknown) => {
    const route = checkPluginDefinition(plugin).routes.find((r) => r.path === path)!;
    const request = new Request(`http://x${path}`, { method: "POST", body: JSON.stringify(body) });
    const response = await runRoute(
      { ...route, pluginId: plugin.name, plugin, log },
      { request, params: {}, query: {} },
      { engine: failingEngine, limits: { maxBodyBytes: 1024 }, server: { version: "test", buildInfo: "b0-test" } },
    );
    expect(response.status).toBe(200);
    return (await readChunks(response)).text;
  };
  const sse = await serve(openai, "/v1/chat/completions", { model: "m", stream: true, messages: [{ role: "user", content: "x" }] });
  const events = sse.trim().split("\n\n");
  expect(JSON.parse(events[0]!.slice(6)).choices[0].delta.content).toBe("Hello");
  expect(JSON.parse(events.at(-1)!.slice(6))).toEqual({
    error: { message: "model crashed", type: "server_error", param: null, code: null },
  });
  const nd = await serve(ollama, "/api/generate", { model: "m", prompt: "x" });
  const lines = nd
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines[0].response).toBe("Hello");
  expect(lines.at(-1)).toEqual({ error: "model crashed" });
});
