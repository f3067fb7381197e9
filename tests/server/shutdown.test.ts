/** Graceful stop and connection limits in-process: queued requests get 503 in their protocol, running streams finish or end with their protocol's error event, quiet connections close. */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { bodyOf, postJson, readChunks, startTestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const user = [{ role: "user", content: "tell me a story" }];

/** Starts a streamed reply and waits until its first chunk arrived: it holds a sequence now. */
async function runningStream(url: string, path: string, body: unknown): Promise<{ rest: Promise<string> }> {
  const response = await postJson(`${url}${path}`, body);
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const first = await reader.read();
  const decoder = new TextDecoder();
  const rest = (async () => {
    let text = decoder.decode(first.value, { stream: true });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  })();
  return { rest };
}

describe("graceful stop", () => {
  test("queued requests get 503 in their protocol's format at once; running streams finish normally", async () => {
    const server = await startTestServer({ demo: { source: "synthetic:demo", context: 1024, parallel: 2 } });
    const openai = { model: "demo", stream: true, ignore_eos: true, max_tokens: 300, messages: user };
    const running = [
      await runningStream(server.url, "/v1/chat/completions", openai),
      await runningStream(server.url, "/v1/chat/completions", openai),
    ];
    const queuedOpenAi = postJson(`${server.url}/v1/chat/completions`, { model: "demo", messages: user });
    const queuedOllama = postJson(`${server.url}/api/chat`, { model: "demo", messages: user });
    await waitFor(
      async () => server.engine.loadedModels()[0]?.queuedRequests,
      (queued) => queued === 2,
    );
    const stopped = server.stop({ graceMs: 10_000 });
    const [openaiReply, ollamaReply] = await Promise.all([queuedOpenAi, queuedOllama]);
    expect(openaiReply.status).toBe(503);
    expect((await bodyOf(openaiReply)).error).toMatchObject({
      type: "server_error",
      message: "the server is shutting down; try again once it is back",
    });
    expect(openaiReply.headers.get("retry-after")).toBe("5");
    expect(ollamaReply.status).toBe(503);
    expect(await bodyOf(ollamaReply)).toEqual({ error: "the server is shutting down; try again once it is back" });
    for (const stream of running) {
      const text = await stream.rest;
      expect(text).toContain('"finish_reason":"length"');
      expect(text).toEndWith("data: [DONE]\n\n");
    }
    await stopped;
    expect(server.engine.loadedModels()).toEqual([]);
  });

  test("streams still running at the deadline end with their protocol's error event, and the models are freed", async () => {
    const server = await startTestServer({ demo: { source: "synthetic:demo", context: 8192, parallel: 3 } });
    const long = { model: "demo", stream: true, max_tokens: 8000 };
    const streams = [
      await runningStream(server.url, "/v1/chat/completions", { ...long, ignore_eos: true, messages: user }),
      await runningStream(server.url, "/v1/messages", { ...long, messages: user }),
      await runningStream(server.url, "/api/generate", { model: "demo", prompt: "hi", options: { num_predict: 8000 } }),
    ];
    const started = performance.now();
    await server.stop({ graceMs: 300 });
    expect(performance.now() - started).toBeLessThan(5_000);
    const [openai, anthropic, ollama] = await Promise.all(streams.map((s) => s.rest));
    const cut = "the server is shutting down; the reply was cut short";
    expect(openai).toEndWith(`data: {"error":{"message":"${cut}","type":"server_error","param":null,"code":null}}\n\n`);
    expect(anthropic).toEndWith(`event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"${cut}"}}\n\n`);
    // The Ollama stream may have ended by itself (end of sequence) before the deadline; if not, its last line says why.
    const last = JSON.parse(ollama!.trim().split("\n").at(-1)!);
    expect(last.done === true || last.error === cut).toBe(true);
    expect(server.engine.loadedModels()).toEqual([]);
  });
});

describe("connections", () => {
  test("a keep-alive connection left quiet is closed after the idle timeout; a request quiet for longer is not", async () => {
    await using server = await startTestServer(
      { demo: { source: "synthetic:demo", context: 256, parallel: 1 } },
      { idleTimeoutSeconds: 1 },
    );
    writeFileSync(
      join(server.dir, "plugins", "slow.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "slow", routes: [{ method: "GET", path: "/slow", handler: async () => { await Bun.sleep(6000); return { slept: true }; } }] });`,
    );
    await waitFor(
      async () => (await fetch(`${server.url}/plugins`)).json(),
      (list: any) => list.plugins.some((p: { id: string }) => p.id === "slow"),
    );
    const slow = fetch(`${server.url}/slow`);
    // One request on a raw connection, then silence, as the 20,000 idle keep-alive sockets that exhausted the fds did.
    const idleClosedAfter = new Promise<number>((resolve) => {
      const socket = connect(server.port, "127.0.0.1", () => socket.write("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"));
      let answeredAt = 0;
      socket.on("data", () => {
        answeredAt ||= performance.now();
      });
      socket.on("close", () => resolve(performance.now() - answeredAt));
    });
    // Bun checks idle timeouts on a coarse clock (about every 4 s).
    expect(await idleClosedAfter).toBeLessThan(9_000);
    const reply = await slow;
    expect(reply.status).toBe(200);
    expect(await bodyOf(reply)).toEqual({ slept: true });
  }, 30_000);

  test("requests over the in-flight limit get a 503 in their format at once, logged once", async () => {
    await using server = await startTestServer({ demo: { source: "synthetic:demo", context: 2048, parallel: 2 } }, { maxRequests: 2 });
    const body = { model: "demo", stream: true, ignore_eos: true, max_tokens: 1000, messages: user };
    const streams = [
      await runningStream(server.url, "/v1/chat/completions", body),
      await runningStream(server.url, "/v1/chat/completions", body),
    ];
    for (let i = 0; i < 3; i++) {
      const refused = await postJson(`${server.url}/api/chat`, { model: "demo", messages: user });
      expect(refused.status).toBe(503);
      expect((await bodyOf(refused)).error).toContain("its limit");
    }
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    expect(server.logs.filter((line) => line.includes("requests in flight, the limit"))).toHaveLength(1);
    for (const stream of streams) await stream.rest;
    const ok = await postJson(`${server.url}/api/chat`, { model: "demo", messages: user, stream: false, options: { num_predict: 2 } });
    expect(ok.status).toBe(200);
  });

  test("a client that disconnects mid-stream is one info line, no errors", async () => {
    await using server = await startTestServer({ demo: { source: "synthetic:demo", context: 2048, parallel: 1 } });
    for (const [path, body] of [
      ["/v1/chat/completions", { model: "demo", stream: true, ignore_eos: true, max_tokens: 1000, messages: user }],
      ["/api/generate", { model: "demo", prompt: "hi", options: { num_predict: 1000 } }],
    ] as const) {
      const controller = new AbortController();
      const response = await postJson(`${server.url}${path}`, body, { signal: controller.signal });
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      await reader.read().catch(() => {});
    }
    await waitFor(
      async () => server.logs.filter((line) => line.includes("client disconnected")).length,
      (n) => n === 2,
    );
    await waitFor(
      async () => server.engine.loadedModels()[0]?.activeSequences,
      (active) => active === 0,
    );
    expect(server.logs.filter((line) => line.startsWith("error"))).toEqual([]);
    // The request's own line says so; no second line for the same request.
    const disconnects = server.logs.filter((line) => line.includes("client disconnected"));
    expect(disconnects).toHaveLength(2);
    // With what was generated before the client left: the line waits for the engine to stop.
    expect(disconnects[0]).toMatch(/^info POST \/v1\/chat\/completions 200 .* demo \d+\+\d+ tokens .* client disconnected \[\w+\]$/);
    expect(disconnects[1]).toMatch(/^info POST \/api\/generate 200 .* demo \d+\+\d+ tokens .* client disconnected \[\w+\]$/);
    const { text } = await readChunks(
      await postJson(`${server.url}/api/generate`, { model: "demo", prompt: "hi", options: { num_predict: 2 } }),
    );
    expect(text).toContain('"done":true');
  });
});
