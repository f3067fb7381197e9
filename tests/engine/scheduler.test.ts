/** Scheduling and model lifecycle through the real server: queue limits, prefix reuse, LRU and memory budget, keep_alive. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bodyOf, postJson, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const tiny = { source: "synthetic:demo", context: 512, threads: 1 };
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(
    {
      queued: { ...tiny, parallel: 1, max_queue: 1 },
      chat: { ...tiny, parallel: 2 },
      a: { ...tiny, parallel: 1 },
      b: { ...tiny, parallel: 1 },
      c: { ...tiny, parallel: 1 },
    },
    { top: { max_loaded_models: 3 } },
  );
});
afterAll(() => server?.[Symbol.asyncDispose]());

const generate = (body: Record<string, unknown>, init?: RequestInit) =>
  postJson(`${server.url}/api/generate`, { prompt: "hi", ...body }, init);
// Ollama lists names with their tag; these models have none, so they show as `name:latest`.
const loadedNames = async () =>
  ((await bodyOf(fetch(`${server.url}/api/ps`))).models as { name: string }[]).map((m) => m.name.replace(/:latest$/, "")).sort();

test("beyond max_queue: 503 with Retry-After, in each protocol's error format", async () => {
  const running = new AbortController();
  const first = await generate({ model: "queued", raw: true, options: { num_predict: 100000 } }, { signal: running.signal });
  const waiting = new AbortController();
  const second = generate({ model: "queued", options: { num_predict: 2 } }, { signal: waiting.signal }).catch(() => undefined);
  await waitFor(
    async () => server.engine.loadedModels().find((m) => m.name === "queued"),
    (m) => m?.queuedRequests === 1,
  );
  const ollama = await generate({ model: "queued" });
  expect(ollama.status).toBe(503);
  expect(ollama.headers.get("retry-after")).toBe("1");
  expect((await bodyOf(ollama)).error).toContain("busy");
  const openai = await postJson(`${server.url}/v1/chat/completions`, { model: "queued", messages: [{ role: "user", content: "x" }] });
  expect(openai.status).toBe(503);
  expect(openai.headers.get("retry-after")).toBe("1");
  expect((await bodyOf(openai)).error.type).toBe("server_error");
  waiting.abort();
  running.abort();
  await first.body?.cancel().catch(() => {});
  await second;
});

test("a follow-up chat turn reuses the cached conversation prefix and reports cached_tokens", async () => {
  const turn1 = [{ role: "user", content: "Tell me about the little dog who lived by the sea and liked to run" }];
  const first = await bodyOf(
    postJson(`${server.url}/v1/chat/completions`, { model: "chat", messages: turn1, max_tokens: 20, temperature: 0 }),
  );
  expect(first.usage.prompt_tokens_details.cached_tokens).toBe(0);
  // Something else runs in between on the other sequence: routing must still find the one holding the conversation.
  await bodyOf(
    postJson(`${server.url}/v1/chat/completions`, {
      model: "chat",
      messages: [{ role: "user", content: "unrelated words" }],
      max_tokens: 5,
    }),
  );
  const turn2 = [...turn1, { role: "assistant", content: first.choices[0].message.content }, { role: "user", content: "And then?" }];
  const second = await bodyOf(
    postJson(`${server.url}/v1/chat/completions`, { model: "chat", messages: turn2, max_tokens: 5, temperature: 0 }),
  );
  expect(second.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(first.usage.prompt_tokens);
  expect(second.usage.prompt_tokens_details.cached_tokens).toBeLessThan(second.usage.prompt_tokens);
  const ollama = await bodyOf(
    postJson(`${server.url}/api/chat`, { model: "chat", messages: turn2, stream: false, options: { num_predict: 3 } }),
  );
  // Ollama's prompt_eval_count counts only what was evaluated: the whole conversation was cached but the last token.
  expect(ollama.prompt_eval_count).toBeLessThanOrEqual(2);
});

describe("model lifecycle", () => {
  test("two first requests at once load the model once", async () => {
    const before = server.logs.filter((l) => l.includes("loaded model a ")).length;
    await Promise.all([
      generate({ model: "a", stream: false, options: { num_predict: 2 } }),
      generate({ model: "a", stream: false, options: { num_predict: 2 } }),
    ]);
    expect(server.logs.filter((l) => l.includes("loaded model a ")).length).toBe(before + 1);
  });

  test("max_loaded_models: the least recently used idle model is unloaded to make room", async () => {
    for (const model of ["a", "b", "chat"]) await bodyOf(generate({ model, stream: false, options: { num_predict: 1 } }));
    expect(await loadedNames()).toEqual(["a", "b", "chat"]);
    await bodyOf(generate({ model: "c", stream: false, options: { num_predict: 1 } }));
    expect(await loadedNames()).toEqual(["b", "c", "chat"]);
  });

  test("keep_alive 0 unloads after the request; an empty prompt with keep_alive 0 unloads at once", async () => {
    await bodyOf(generate({ model: "b", stream: false, keep_alive: 0, options: { num_predict: 1 } }));
    expect(await waitFor(loadedNames, (names) => !names.includes("b"))).not.toContain("b");
    await bodyOf(generate({ model: "c", prompt: "" }));
    expect(await loadedNames()).toContain("c");
    expect(await bodyOf(generate({ model: "c", prompt: "", keep_alive: "0m" }))).toMatchObject({ done: true, done_reason: "unload" });
    expect(await waitFor(loadedNames, (names) => !names.includes("c"))).not.toContain("c");
  });

  test("keep_alive as a duration sets when the model expires; negative never expires", async () => {
    await bodyOf(generate({ model: "a", stream: false, keep_alive: "10m", options: { num_predict: 1 } }));
    const ps = (await bodyOf(fetch(`${server.url}/api/ps`))).models.find((m: { name: string }) => m.name === "a:latest");
    const inMs = Date.parse(ps.expires_at) - Date.now();
    expect(inMs).toBeGreaterThan(9 * 60_000);
    expect(inMs).toBeLessThanOrEqual(10 * 60_000);
    await bodyOf(generate({ model: "a", stream: false, keep_alive: -1, options: { num_predict: 1 } }));
    const forever = (await bodyOf(fetch(`${server.url}/api/ps`))).models.find((m: { name: string }) => m.name === "a:latest");
    expect(Date.parse(forever.expires_at)).toBeGreaterThan(Date.now() + 100 * 365 * 86_400_000);
    expect((await generate({ model: "a", keep_alive: "soon" })).status).toBe(400);
  });
});

test("a model that cannot fit the memory budget is a clear error, not a crash", async () => {
  await using small = await startTestServer({ demo: { ...tiny, parallel: 1 } }, { top: { memory_budget: "1MB" } });
  const response = await postJson(`${small.url}/api/generate`, { model: "demo", prompt: "hi" });
  expect(response.status).toBe(503);
  expect((await bodyOf(response)).error).toContain("more than the memory budget of");
  expect((await fetch(`${small.url}/health`)).status).toBe(200);
});
