/** Request log lines and ids, /metrics (the inference gateway's gauges included) and /openapi.json, on a real server. */
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import OpenAI from "openai";
import { bodyOf, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", context: 2048, parallel: 1, defaults: { max_tokens: 8 } },
    other: { source: "synthetic:tiny-f32", context: 256, parallel: 1 },
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const user = [{ role: "user", content: "hello there" }];

/** The log lines of one request, found by its id. */
const linesOf = (id: string) => server.logs.filter((line) => line.includes(`[${id}]`));

/** Prometheus' text format: `name{labels} value` lines into a map (comments skipped). */
async function scrape(url = server.url, init?: RequestInit): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`, init);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

describe("request log", () => {
  test("one line per request: id, route, model, status, tokens, time to first token, tokens/s; the engine adds none", async () => {
    const response = await postJson(
      `${server.url}/v1/chat/completions`,
      { model: "demo", stream: true, max_tokens: 6, messages: user },
      { headers: { "content-type": "application/json", "x-request-id": "trace-42" } },
    );
    expect(response.headers.get("x-request-id")).toBe("trace-42");
    await readChunks(response);
    const [line] = await waitFor(
      async () => linesOf("trace-42"),
      (lines) => lines.length > 0,
    );
    expect(line).toMatch(
      /^info POST \/v1\/chat\/completions 200 \d+(\.\d)? ms demo \d+\+6 tokens ttft \d+(\.\d)? ms \d+ tok\/s \[trace-42\]$/,
    );
    // Nothing else about this generation: the engine's own line is gone when a request carries it.
    expect(server.logs.filter((l) => l.includes("prompt tokens ("))).toEqual([]);
    expect(linesOf("trace-42")).toHaveLength(1);
  });

  test("a client's x-request-id is kept without unsafe characters and cut to 128; none given: a new one, in and out", async () => {
    const weird = await fetch(`${server.url}/v1/models`, { headers: { "x-request-id": 'a b"c<d>\\e{f}g' } });
    expect(weird.headers.get("x-request-id")).toBe("abcdefg");
    const long = await fetch(`${server.url}/v1/models`, { headers: { "x-request-id": "x".repeat(5000) } });
    expect(long.headers.get("x-request-id")).toBe("x".repeat(128));
    const empty = await fetch(`${server.url}/v1/models`, { headers: { "x-request-id": '""' } });
    const fresh = await fetch(`${server.url}/v1/models`);
    for (const response of [empty, fresh]) {
      const id = response.headers.get("x-request-id")!;
      expect(id).toMatch(/^[0-9a-f]{20}$/);
      await waitFor(
        async () => linesOf(id),
        (lines) => lines.length === 1,
      );
    }
    expect(empty.headers.get("x-request-id")).not.toBe(fresh.headers.get("x-request-id"));
  });

  test("4xx lines carry the reason; host answers and unknown routes are logged too, with the id sent back", async () => {
    const unknownModel = await postJson(`${server.url}/v1/chat/completions`, { model: "nope", messages: user });
    expect(unknownModel.status).toBe(404);
    const bad = await postJson(`${server.url}/api/chat`, { model: "demo", messages: "not a list" });
    expect(bad.status).toBe(400);
    const missing = await fetch(`${server.url}/v1/nothing-here`);
    expect(missing.status).toBe(404);
    const [a, b, c] = await Promise.all(
      [unknownModel, bad, missing].map((r) =>
        waitFor(
          async () => linesOf(r.headers.get("x-request-id")!),
          (lines) => lines.length === 1,
        ),
      ),
    );
    expect(a![0]).toMatch(/^info POST \/v1\/chat\/completions 404 .*: model "nope" not found/);
    expect(b![0]).toMatch(/^info POST \/api\/chat 400 .*: messages/);
    expect(c![0]).toMatch(/^info GET \/v1\/nothing-here 404 .*: no route for GET \/v1\/nothing-here/);
  });

  test("successful /health and /metrics polls are not logged", async () => {
    const health = await fetch(`${server.url}/health`);
    const metrics = await fetch(`${server.url}/metrics`);
    await fetch(`${server.url}/plugins`).then((r) => r.text());
    await metrics.text();
    const plugins = await waitFor(
      async () => server.logs.filter((l) => l.includes("GET /plugins 200")),
      (lines) => lines.length >= 1,
    );
    expect(plugins.length).toBeGreaterThan(0);
    expect(linesOf(health.headers.get("x-request-id")!)).toEqual([]);
    expect(linesOf(metrics.headers.get("x-request-id")!)).toEqual([]);
  });
});

describe("/metrics", () => {
  test("requests by route and status, tokens in and out, time to first token and per-token latency", async () => {
    const before = await scrape();
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none" });
    const completion = await client.chat.completions.create({ model: "demo", messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
    await postJson(`${server.url}/v1/chat/completions`, { model: "missing", messages: user });
    const after = await scrape();
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(delta('llamaport_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}')).toBe(1);
    expect(delta('llamaport_http_requests_total{method="POST",route="/v1/chat/completions",status="404"}')).toBe(1);
    expect(delta('llamaport_prompt_tokens_total{model="demo"}')).toBe(completion.usage!.prompt_tokens);
    expect(delta('llamaport_generation_tokens_total{model="demo"}')).toBe(completion.usage!.completion_tokens);
    expect(delta('llamaport_time_to_first_token_seconds_count{model="demo"}')).toBe(1);
    expect(delta('llamaport_time_per_output_token_seconds_count{model="demo"}')).toBe(1);
    expect(delta('llamaport_http_request_duration_seconds_count{method="POST",route="/v1/chat/completions"}')).toBe(2);
    expect(after.get('llamaport_model_loaded{model="demo"}')).toBe(1);
    expect(after.get('llamaport_model_memory_bytes{model="demo"}')).toBeGreaterThan(0);
    expect(after.get('llamaport_kv_cache_tokens{model="demo"}')).toBe(2048);
    expect(after.get("process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  test("queue depth, running requests and KV cache use, per model and as the inference gateway's vLLM gauges", async () => {
    const idle = await scrape();
    expect(idle.get("vllm:num_requests_waiting")).toBe(0);
    expect(idle.get("vllm:num_requests_running")).toBe(0);
    expect(idle.get("vllm:kv_cache_usage_perc")).toBe(0);
    // `demo` has one sequence: a long stream holds it, two more requests wait in its queue.
    const holder = new AbortController();
    const waiter = new AbortController();
    const long = { model: "demo", stream: true, max_tokens: 1900, ignore_eos: true, messages: user };
    const first = await postJson(`${server.url}/v1/chat/completions`, long, { signal: holder.signal });
    const reader = first.body!.getReader();
    await reader.read();
    const waiting = [1, 2].map(() => postJson(`${server.url}/v1/chat/completions`, long, { signal: waiter.signal }).catch(() => undefined));
    await waitFor(
      async () => server.engine.loadedModels().find((m) => m.name === "demo")?.queuedRequests,
      (queued) => queued === 2,
    );
    const busy = await scrape();
    holder.abort();
    waiter.abort();
    await Promise.all(waiting);
    expect(busy.get("vllm:num_requests_waiting")).toBe(2);
    expect(busy.get("vllm:num_requests_running")).toBe(1);
    expect(busy.get('llamaport_requests_queued{model="demo"}')).toBe(2);
    expect(busy.get('llamaport_sequences_active{model="demo"}')).toBe(1);
    const used = busy.get('llamaport_kv_cache_used_tokens{model="demo"}')!;
    expect(used).toBeGreaterThan(0);
    expect(busy.get("vllm:kv_cache_usage_perc")).toBeCloseTo(used / 2048, 6);
    expect(busy.get("vllm:gpu_cache_usage_perc")).toBe(busy.get("vllm:kv_cache_usage_perc")!);
    await waitFor(
      async () => (await scrape()).get("vllm:num_requests_running"),
      (running) => running === 0,
    );
  });

  test("plugin loads and reloads are counted, failed ones apart", async () => {
    const file = join(server.dir, "plugins", "counted.ts");
    const count = async (result: string) => (await scrape()).get(`llamaport_plugin_loads_total{plugin="counted",result="${result}"}`) ?? 0;
    await Bun.write(file, 'export default { name: "counted", routes: [{ method: "GET", path: "/counted", handler: () => 1 }] };\n');
    await waitFor(
      () => count("loaded"),
      (n) => n === 1,
    );
    await Bun.write(file, "export default { name: 'counted', routes: [ };\n");
    await waitFor(
      () => count("failed"),
      (n) => n === 1,
    );
    await Bun.write(file, 'export default { name: "counted", routes: [{ method: "GET", path: "/counted", handler: () => 2 }] };\n');
    await waitFor(
      () => count("loaded"),
      (n) => n === 2,
    );
    expect(await bodyOf(fetch(`${server.url}/counted`))).toBe(2);
  });

  test("behind an API key: /metrics needs it, unless --public-metrics opens it like /health", async () => {
    await using locked = await startTestServer({ demo: { source: "synthetic:demo", context: 256 } }, { apiKeys: ["sk-m"] });
    expect((await fetch(`${locked.url}/metrics`)).status).toBe(401);
    await scrape(locked.url, { headers: { authorization: "Bearer sk-m" } });
    await using open = await startTestServer(
      { demo: { source: "synthetic:demo", context: 256 } },
      { apiKeys: ["sk-m"], publicMetrics: true },
    );
    await scrape(open.url);
    expect((await fetch(`${open.url}/plugins`)).status).toBe(401);
  });
});

describe("/openapi.json", () => {
  const document = async (url = server.url, init?: RequestInit) => bodyOf(fetch(`${url}/openapi.json`, init));

  test("is valid OpenAPI 3.1 with every loaded route, plugin bodies as JSON Schema, path parameters named", async () => {
    const doc = await document();
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
    const chat = doc.paths["/v1/chat/completions"].post;
    expect(chat.tags).toEqual(["openai"]);
    expect(chat.requestBody.content["application/json"].schema.properties.messages.type).toBe("array");
    // `model` is optional (the default model answers without one); `messages` is required.
    expect(chat.requestBody.content["application/json"].schema.required).toEqual(["messages"]);
    expect(chat.requestBody.content["application/json"].schema.properties.model).toBeDefined();
    expect(doc.paths["/v1/models/{model}"].get.parameters).toEqual([expect.objectContaining({ name: "model", in: "path" })]);
    // Two plugins share GET /v1/models by header: one operation that names both.
    expect(doc.paths["/v1/models"].get.description).toContain('Requests with `anthropic-version` are served by plugin "anthropic"');
    expect(doc.paths["/api/chat"].post.tags).toEqual(["ollama"]);
    expect(doc.paths["/v1/messages"].post.tags).toEqual(["anthropic"]);
    expect(doc.paths["/health"].get.security).toEqual([]);
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/metrics", "/plugins", "/openapi.json", "/"]));
    expect(doc.security).toBeUndefined();
  });

  test("follows plugin reloads: a new plugin's routes appear, a removed one's go", async () => {
    const file = join(server.dir, "plugins", "documented.ts");
    await Bun.write(
      file,
      `import { definePlugin, t } from "llamaport";
export default definePlugin({ name: "documented", version: "3.0.0", routes: [
  { method: "POST", path: "/documented/:thing", body: t.Object({ size: t.Integer({ minimum: 1 }) }), handler: () => ({}) },
] });
`,
    );
    const doc = await waitFor(document, (d) => d.paths["/documented/{thing}"] !== undefined);
    const op = doc.paths["/documented/{thing}"].post;
    expect(op.description).toBe('Served by plugin "documented" 3.0.0.');
    expect(op.requestBody.content["application/json"].schema).toEqual({
      type: "object",
      properties: { size: { type: "integer", minimum: 1 } },
      required: ["size"],
    });
    await Bun.$`rm ${file}`;
    await waitFor(document, (d) => d.paths["/documented/{thing}"] === undefined);
  });

  test("with API keys, it declares both ways of sending one", async () => {
    await using locked = await startTestServer({ demo: { source: "synthetic:demo", context: 256 } }, { apiKeys: ["sk-o"] });
    const doc = await document(locked.url, { headers: { "x-api-key": "sk-o" } });
    expect(doc.components.securitySchemes.bearer).toEqual(expect.objectContaining({ type: "http", scheme: "bearer" }));
    expect(doc.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
    expect((await new Validator().validate(doc)).valid).toBe(true);
  });
});
