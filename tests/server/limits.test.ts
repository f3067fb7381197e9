/** Requests that used to freeze or break the server: oversized stop strings, prompts and bodies, deep nesting, endless max_tokens, odd plugins and Host headers. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { bodyOf, postJson, startTestServer, type TestServer } from "../support/testServer.ts";
import { pollHealth } from "../support/healthWait.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", context: 256, parallel: 2 },
    // A real-size vocabulary and a large context: prompts of a megabyte may fit and must be tokenized.
    wide: { source: "synthetic:tiny-32k", context: 131072, parallel: 1 },
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const url = (path: string) => `${server.url}${path}`;
const user = [{ role: "user", content: "hi" }];

/**
 * The longest time /health waited while `work` ran, counting only time this process's main thread was busy (a
 * blocked event loop), not time it got no CPU on a shared machine; see tests/support/healthWait.ts.
 */
async function longestHealthWait<T>(work: () => Promise<T>): Promise<{ result: T; longestMs: number }> {
  const poller = pollHealth(server.url);
  try {
    const result = await work();
    return { result, longestMs: (await poller.stop()).longestBusyMs };
  } finally {
    await poller.stop();
  }
}

describe("stop strings", () => {
  const long = "x".repeat(1001);
  test("at most 16, each up to 1,000 characters; more is a 400 naming each protocol's field", async () => {
    const sixteen = Array.from({ length: 16 }, (_, i) => `${"y".repeat(990)}${i}`);
    expect((await postJson(url("/v1/chat/completions"), { model: "demo", max_tokens: 3, messages: user, stop: sixteen })).status).toBe(200);
    const cases: [string, unknown, (body: any) => unknown][] = [
      ["/v1/chat/completions", { model: "demo", messages: user, stop: [long] }, (b) => b.error.param],
      ["/v1/completions", { model: "demo", prompt: "hi", stop: [...sixteen, "z"] }, (b) => b.error.param],
      ["/api/generate", { model: "demo", prompt: "hi", options: { stop: [long] } }, (b) => b.error.split(" ")[0]],
      ["/api/chat", { model: "demo", messages: user, options: { stop: [...sixteen, "z"] } }, (b) => b.error.split(" ")[0]],
      ["/v1/messages", { model: "demo", max_tokens: 3, messages: user, stop_sequences: [long] }, (b) => b.error.message.split(" ")[0]],
    ];
    for (const [path, body, field] of cases) {
      const response = await postJson(url(path), body);
      expect(`${path} ${response.status}`).toBe(`${path} 400`);
      expect(field(await bodyOf(response))).toBe(
        path.startsWith("/api") ? "options.stop" : path === "/v1/messages" ? "stop_sequences" : "stop",
      );
    }
  });

  test("a 1 MB stop string is refused at once, without freezing the other routes", async () => {
    const body = JSON.stringify({ model: "demo", prompt: "hi", options: { stop: ["s".repeat(1_000_000)] } });
    const { result, longestMs } = await longestHealthWait(() => postJson(url("/api/generate"), body));
    expect(result.status).toBe(400);
    expect(longestMs).toBeLessThan(100);
  });
});

describe("token bias texts", () => {
  test("each at most 1,000 characters, 32,768 in all; a 1 MB one is refused at once, without freezing the other routes", async () => {
    const biased = (texts: string[]) =>
      postJson(url("/v1/completions"), {
        model: "demo",
        prompt: "hi",
        max_tokens: 1,
        logit_bias: Object.fromEntries(texts.map((t) => [t, -5])),
      });
    const texts = (count: number, length: number) => Array.from({ length: count }, (_, i) => `${i}`.padEnd(length, "日"));
    expect((await biased(texts(32, 1000))).status).toBe(200);
    for (const over of [texts(1, 1001), texts(33, 1000)]) {
      const response = await biased(over);
      expect(response.status).toBe(400);
      expect((await bodyOf(response)).error.param).toBe("logit_bias");
    }
    const { result, longestMs } = await longestHealthWait(() => biased(["s".repeat(1_000_000)]));
    expect(result.status).toBe(400);
    expect(longestMs).toBeLessThan(100);
  });
});

describe("max_tokens", () => {
  test("a huge max_tokens is clamped to what the context holds: the reply ends with finish reason length", async () => {
    const response = await postJson(url("/v1/chat/completions"), { model: "demo", max_tokens: 1e308, ignore_eos: true, messages: user });
    expect(response.status).toBe(200);
    const body = await bodyOf(response);
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.usage.total_tokens).toBeLessThanOrEqual(256);
    expect(body.usage.completion_tokens).toBeGreaterThan(100);
  });

  test("every route answers a huge max_tokens; a non-finite one is a 400", async () => {
    const bodies: [string, unknown][] = [
      ["/v1/completions", { model: "demo", prompt: "hi", max_tokens: 1e308 }],
      ["/api/generate", { model: "demo", prompt: "hi", stream: false, options: { num_predict: 1e308 } }],
      ["/api/chat", { model: "demo", messages: user, stream: false, options: { num_predict: 1e308 } }],
      ["/v1/messages", { model: "demo", messages: user, max_tokens: 1e308 }],
    ];
    for (const [path, body] of bodies) expect(`${path} ${(await postJson(url(path), body)).status}`).toBe(`${path} 200`);
    // JSON has no Infinity, but 1e400 parses to it.
    const infinite = await postJson(
      url("/v1/chat/completions"),
      '{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}',
    );
    expect(infinite.status).toBe(400);
    expect((await bodyOf(infinite)).error.param).toBe("max_tokens");
  });
});

describe("bodies", () => {
  const postRoutes = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/generate",
    "/api/chat",
    "/api/show",
    "/api/embed",
    "/v1/messages",
    "/v1/messages/count_tokens",
  ];

  test("deep nesting is a 400 at once on every POST route, never a 500 from a blown stack", async () => {
    const deep = `{"model":"demo","x":${"[".repeat(200_000)}${"]".repeat(200_000)}}`;
    for (const path of postRoutes) {
      const started = performance.now();
      const response = await postJson(url(path), deep);
      expect(`${path} ${response.status}`).toBe(`${path} 400`);
      expect(await response.text()).toContain("nested more than 64 levels");
      expect(performance.now() - started).toBeLessThan(1_000);
    }
    // 64 levels are fine (a JSON schema nests a few).
    const ok = `{"model":"demo","prompt":"hi","stream":false,"x":${"[".repeat(62)}${"]".repeat(62)}}`;
    expect((await postJson(url("/api/generate"), ok)).status).toBe(200);
  });

  test("a body over Bun's own 128 MB limit still gets the host's 413 in the route's format", async () => {
    const response = await fetch(url("/v1/chat/completions"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new Uint8Array(129 * 1024 ** 2),
    });
    expect(response.status).toBe(413);
    const body = await bodyOf(response);
    expect(body.error.message).toContain("larger than the limit of 10485760 bytes");
    expect(body.error.type).toBe("invalid_request_error");
  });

  test("error bodies never echo a megabyte back, and still say what they must", async () => {
    const unknown = await bodyOf(postJson(url("/v1/chat/completions"), { model: "m".repeat(1_000_000), messages: user }));
    expect(unknown.error.message).toEndWith('… (1000000 characters)" not found; available: demo, wide');
    const name = "m".repeat(1_000_000);
    for (const [path, body] of [
      ["/v1/chat/completions", { model: name, messages: user }],
      ["/api/generate", { model: "demo", prompt: "hi", keep_alive: name }],
      ["/api/chat", { model: "demo", messages: user, keep_alive: `1${"1".repeat(100_000)}x` }],
      ["/v1/messages", { model: "demo", max_tokens: 1, messages: [{ role: name, content: "x" }] }],
    ] as const) {
      const response = await postJson(url(path), body);
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(500);
      expect((await response.text()).length).toBeLessThan(2_500);
    }
  });
});

describe("prompts", () => {
  test("a prompt that cannot fit is refused before it is tokenized, at once and without freezing the server", async () => {
    // Loaded first: node-llama-cpp itself holds the event loop for a while when it loads a model (see README).
    await server.engine.load("wide");
    const prompt = "once upon a time ".repeat(500_000); // 8.5 MB
    const body = JSON.stringify({ model: "wide", prompt });
    const { result, longestMs } = await longestHealthWait(async () => {
      const started = performance.now();
      const response = await postJson(url("/v1/completions"), body);
      return { response, ms: performance.now() - started };
    });
    expect(result.response.status).toBe(400);
    expect(result.ms).toBeLessThan(1_000);
    expect((await bodyOf(result.response)).error.message).toMatch(/^prompt too long for the context: 8500000 characters cannot fit/);
    expect(longestMs).toBeLessThan(100);
    const chat = await postJson(url("/api/chat"), { model: "demo", messages: [{ role: "user", content: prompt.slice(0, 100_000) }] });
    expect((await bodyOf(chat)).error).toContain("100000 characters cannot fit in the 231 tokens");
  });

  test("a long prompt that can fit is tokenized off the event loop: /health answers meanwhile", async () => {
    const prompt = "the little dog ran after the red ball in the garden ".repeat(20_000); // 1,040,000 characters
    const { result, longestMs } = await longestHealthWait(async () => {
      const counted = await bodyOf(
        postJson(url("/v1/messages/count_tokens"), { model: "wide", messages: [{ role: "user", content: prompt }] }),
      );
      const chat = await postJson(url("/v1/chat/completions"), {
        model: "wide",
        max_tokens: 1,
        messages: [{ role: "user", content: prompt }],
      });
      return { counted, chat };
    });
    expect(result.counted.input_tokens).toBeGreaterThan(200_000);
    // Too many tokens for the context after all: known only once tokenized, and still a clean 400.
    expect(result.chat.status).toBe(400);
    expect((await bodyOf(result.chat)).error.code).toBe("context_length_exceeded");
    expect(longestMs).toBeLessThan(100);
  });
});

describe("plugins and JSON schemas", () => {
  test("a handler that returns a function is a 500 plugin error, logged, not an empty 200", async () => {
    writeFileSync(
      join(server.dir, "plugins", "fn.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "fn", routes: [{ method: "GET", path: "/fn", handler: () => () => 1 }] });`,
    );
    const response = await waitFor(
      () => fetch(url("/fn")),
      (r) => r.status !== 404,
    );
    expect(response.status).toBe(500);
    expect((await bodyOf(response)).error.message).toContain("returned a function");
    expect(server.logs.some((line) => line.startsWith("error [fn] GET /fn:") && line.includes("returned a function"))).toBe(true);
  });

  test("a JSON schema with an unknown type is a 400, not a grammar that answers null", async () => {
    const openai = await postJson(url("/v1/chat/completions"), {
      model: "demo",
      messages: user,
      response_format: {
        type: "json_schema",
        json_schema: { name: "x", schema: { type: "object", properties: { a: { type: "nonsense" } } } },
      },
    });
    expect(openai.status).toBe(400);
    const error = (await bodyOf(openai)).error;
    expect(error.param).toBe("response_format");
    expect(error.message).toContain('properties.a.type is "nonsense"');
    const tool = await postJson(url("/v1/chat/completions"), {
      model: "demo",
      messages: user,
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { type: "nonsense" } } } } }],
    });
    expect(tool.status).toBe(400);
    expect((await bodyOf(tool)).error.message).toContain("properties.a.type");
    const ollama = await postJson(url("/api/generate"), { model: "demo", prompt: "hi", format: { type: "nonsense" } });
    expect(ollama.status).toBe(400);
    // A property named "type", and a schema too large to compile quickly.
    const named = { type: "object", properties: { type: { type: "string" } }, required: ["type"] };
    expect(
      (await postJson(url("/api/generate"), { model: "demo", prompt: "hi", stream: false, format: named, options: { num_predict: 3 } }))
        .status,
    ).toBe(200);
    const huge = { type: "string", enum: Array.from({ length: 5000 }, (_, i) => `value-${i}`) };
    const tooBig = await postJson(url("/api/generate"), { model: "demo", prompt: "hi", format: huge });
    expect(tooBig.status).toBe(400);
    expect((await bodyOf(tooBig)).error).toContain("at most 16384 are supported");
  });

  test("GET /plugins and client errors show no absolute paths", async () => {
    const listing = await (await fetch(url("/plugins"))).text();
    expect(listing).not.toContain(server.dir);
    expect(listing).toContain('"source":"plugins/fn.ts"');
    await using missing = await startTestServer({ gone: { source: "/no/such/dir/model.gguf" } });
    const response = await postJson(`${missing.url}/api/generate`, { model: "gone", prompt: "hi" });
    expect(response.status).toBe(404);
    const text = await response.text();
    expect(text).toContain("model.gguf");
    expect(text).not.toContain("/no/such/dir");
    expect(missing.logs.some((line) => line.includes("/no/such/dir/model.gguf"))).toBe(true);
  });
});
