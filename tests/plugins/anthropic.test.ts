/** The Anthropic plugin loaded from disk into a real server: the official SDK, exact SSE framing, stop sequences and error bodies. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { copyFileSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Problem, ProblemCode, SseMessage } from "../../src/pluginApi/index.ts";
import { postJson, readChunks, startTestServer, tempDir, type TestServer } from "../support/testServer.ts";

const pluginFile = resolve(import.meta.dir, "../../plugins/anthropic.ts");
const model = "demo";
const user = (content: string) => [{ role: "user" as const, content }];

type Params = Anthropic.MessageCreateParamsNonStreaming;
/**
 * Greedy (temperature 0), so the demo model repeats itself. The SDK's 1.x types dropped the sampling fields, but it
 * still sends them and the Messages wire format (and llamaport) still takes them.
 */
const sampled = (params: Omit<Params, "model">, temperature = 0) => ({ model, temperature, ...params }) as Params;

let pluginsDir: ReturnType<typeof tempDir>;
let server: TestServer;
let client: Anthropic;

beforeAll(async () => {
  // Served from a plugins folder (replacing the built-in copy) as a third-party file would be: this proves the
  // bundled plugin needs nothing but the public API.
  pluginsDir = tempDir("llamaport-anthropic-");
  const dir = join(pluginsDir.path, "plugins");
  mkdirSync(dir);
  copyFileSync(pluginFile, join(dir, "anthropic.ts"));
  server = await startTestServer(
    { demo: { source: "synthetic:demo", context: 512, parallel: 2 }, second: { source: "synthetic:demo", context: 256, parallel: 1 } },
    { plugins: dir },
  );
  client = new Anthropic({ baseURL: server.url, apiKey: "x", maxRetries: 0 });
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
  pluginsDir?.[Symbol.dispose]();
});

const messages = (body: unknown) => postJson(`${server.url}/v1/messages`, body);

/** Splits an SSE body into events, failing on anything that is not `event: name\ndata: json\n\n`. */
function parseEvents(text: string): { event: string; data: any }[] {
  expect(text).toMatch(/^(event: [a-z_]+\ndata: [^\n]+\n\n)+$/);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((block) => {
      const [eventLine, dataLine] = block.split("\n") as [string, string];
      return { event: eventLine.slice("event: ".length), data: JSON.parse(dataLine.slice("data: ".length)) };
    });
}

test("the plugin is loaded from the plugins folder", async () => {
  const { plugins } = (await (await fetch(`${server.url}/plugins`)).json()) as {
    plugins: { id: string; state: string; routes: string[] }[];
  };
  const anthropic = plugins.find((p) => p.id === "anthropic");
  expect(anthropic?.state).toBe("active");
  expect(anthropic?.routes).toEqual([
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "GET /v1/models (with anthropic-version)",
    "GET /v1/models/:model_id (with anthropic-version)",
  ]);
});

describe("official SDK", () => {
  test("messages.create returns a message that stops at max_tokens", async () => {
    const message = await client.messages.create(sampled({ max_tokens: 5, messages: user("Hello there") }));
    expect(message.id).toMatch(/^msg_[0-9a-z]{24}$/);
    expect(message).toMatchObject({ type: "message", role: "assistant", model, stop_reason: "max_tokens", stop_sequence: null });
    expect(message.content).toHaveLength(1);
    const [block] = message.content;
    expect(block?.type).toBe("text");
    expect(block?.type === "text" && block.text.length).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBe(5);
    expect(message.usage.cache_creation_input_tokens).toBe(0);
    expect(message.usage.input_tokens + (message.usage.cache_read_input_tokens ?? 0)).toBeGreaterThan(0);
  });

  test("messages.stream yields text events whose sum is finalMessage(), equal to the non-streamed reply", async () => {
    const params = sampled({ max_tokens: 12, messages: user("Tell me a story") });
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const pieces: string[] = [];
    stream.on("text", (text) => pieces.push(text));
    const final = await stream.finalMessage();
    expect(pieces.length).toBeGreaterThan(1);
    const text = pieces.join("");
    expect(final.content).toEqual([expect.objectContaining({ type: "text", text })]);
    expect(whole.content[0]).toMatchObject({ type: "text", text });
    expect(final).toMatchObject({ id: expect.stringMatching(/^msg_/), model, stop_reason: "max_tokens", stop_sequence: null });
    // message_start already carries the prompt's size; message_delta repeats it with the output tokens.
    expect(final.usage.output_tokens).toBe(12);
    const promptSize = (u: Anthropic.Usage) => u.input_tokens + (u.cache_read_input_tokens ?? 0);
    expect(promptSize(final.usage)).toBe(promptSize(whole.usage));
    expect(promptSize(final.usage)).toBeGreaterThan(0);
  });

  test("stop_sequences: generation ends before the stop string and reports it", async () => {
    const params = sampled({ max_tokens: 20, messages: user("Once upon a time") });
    const first = await client.messages.create(params);
    const full = first.content[0]?.type === "text" ? first.content[0].text : "";
    // A stop string taken from the greedy output itself must occur when the same request runs again.
    const stop = full
      .slice(Math.floor(full.length / 2))
      .trim()
      .slice(0, 3);
    expect(stop.length).toBe(3);
    const expected = full.slice(0, full.indexOf(stop));
    const stopped = await client.messages.create({ ...params, stop_sequences: ["never-appears-xyz", stop] });
    expect(stopped.stop_reason).toBe("stop_sequence");
    expect(stopped.stop_sequence).toBe(stop);
    expect(stopped.content).toEqual([expect.objectContaining({ type: "text", text: expected })]);

    const streamed = await client.messages.stream({ ...params, stop_sequences: [stop] }).finalMessage();
    expect(streamed).toMatchObject({ stop_reason: "stop_sequence", stop_sequence: stop });
    expect(streamed.content[0]).toMatchObject({ type: "text", text: expected });
  });

  test("system as a string and as text blocks is the same prompt; text blocks in messages are accepted", async () => {
    const a = await client.messages.create(sampled({ max_tokens: 8, system: "You are terse.", messages: user("Hi") }));
    const b = await client.messages.create(
      sampled({
        max_tokens: 8,
        system: [{ type: "text", text: "You are terse." }],
        messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }],
      }),
    );
    expect(b.content).toEqual(a.content);
    expect(b.usage.input_tokens + (b.usage.cache_read_input_tokens ?? 0)).toBe(
      a.usage.input_tokens + (a.usage.cache_read_input_tokens ?? 0),
    );
  });

  test("thinking blocks of an earlier answer (a conversation moved from Claude) are left out of the prompt, as Anthropic does", async () => {
    const history = (answer: Anthropic.ContentBlockParam[]): Anthropic.MessageParam[] => [
      ...user("Hi"),
      { role: "assistant", content: answer },
      ...user("And then?"),
    ];
    const plain = await client.messages.create(sampled({ max_tokens: 4, messages: history([{ type: "text", text: "Hello." }]) }));
    const withThinking = await client.messages.create(
      sampled({
        max_tokens: 4,
        messages: history([
          { type: "thinking", thinking: "The user greets me.", signature: "c2ln" },
          { type: "redacted_thinking", data: "cmVkYWN0ZWQ=" },
          { type: "text", text: "Hello." },
        ]),
      }),
    );
    expect(withThinking.content).toEqual(plain.content);
    const size = (m: Anthropic.Message) => m.usage.input_tokens + (m.usage.cache_read_input_tokens ?? 0);
    expect(size(withThinking)).toBe(size(plain));
  });

  test("countTokens counts the text of system and messages", async () => {
    const short = await client.messages.countTokens({ model, messages: user("Hello") });
    const long = await client.messages.countTokens({ model, system: "Be brief.", messages: user("Hello there, how are you today?") });
    expect(short.input_tokens).toBeGreaterThan(0);
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens);
  });

  test("errors come back as the SDK's typed errors", async () => {
    const unknown = await failure(client.messages.create({ model: "no-such-model", max_tokens: 5, messages: user("Hi") }));
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect((unknown as InstanceType<typeof Anthropic.NotFoundError>).type).toBe("not_found_error");
    const badTemperature = await failure(client.messages.create(sampled({ max_tokens: 5, messages: user("Hi") }, 3)));
    expect(badTemperature).toBeInstanceOf(Anthropic.BadRequestError);
  });
});

// The SDK's APIPromise is a thenable that bun's `.rejects` does not unwrap, so catch by hand.
const failure = (promise: PromiseLike<unknown>) =>
  Promise.resolve(promise).then(
    () => undefined,
    (error: unknown) => error as InstanceType<typeof Anthropic.APIError>,
  );
/** The message of an API error's body (the SDK's own `message` is the status and the whole JSON). */
const messageOf = (error: InstanceType<typeof Anthropic.APIError> | undefined) =>
  (error?.error as { error?: { message?: string } })?.error?.message;

describe("official SDK: models, usage, refused blocks and fields", () => {
  test("models.list and models.retrieve answer in Anthropic's shape, paged", async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual(["demo", "second"]);
    const [demo] = page.data;
    expect(demo).toMatchObject({ type: "model", id: "demo", display_name: "demo", max_input_tokens: 512, lifecycle: "active" });
    expect(Date.parse(demo!.created_at)).toBeGreaterThan(0);
    expect(demo!.capabilities).toMatchObject({ image_input: { supported: false }, pdf_input: { supported: false } });
    expect(demo!.capabilities?.thinking.supported).toBe(false);
    const ids: string[] = [];
    for await (const model of client.models.list({ limit: 1 })) ids.push(model.id);
    expect(ids).toEqual(["demo", "second"]);
    expect(await client.models.retrieve("second")).toMatchObject({ type: "model", id: "second", max_input_tokens: 256 });
    const missing = await failure(client.models.retrieve("nope"));
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
  });

  test("the stream's message_start carries the prompt's real size, which the SDK keeps", async () => {
    const params = sampled({ max_tokens: 4, messages: user("Tell me a story about a dog") });
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    let started: Anthropic.Usage | undefined;
    stream.on("streamEvent", (event) => {
      if (event.type === "message_start") started = { ...event.message.usage };
    });
    const final = await stream.finalMessage();
    const promptSize = (u: Anthropic.Usage) => u.input_tokens + (u.cache_read_input_tokens ?? 0);
    expect(started!.output_tokens).toBe(0);
    expect(promptSize(started!)).toBe(promptSize(whole.usage));
    expect(promptSize(started!)).toBeGreaterThan(5);
    expect(final.usage.input_tokens).toBe(started!.input_tokens);
  });

  test("image and document blocks are refused by name (text-only models), never dropped", async () => {
    const image = { type: "image" as const, source: { type: "base64" as const, media_type: "image/png" as const, data: "iVBORw0KGgo=" } };
    const withImage = await failure(
      client.messages.create(
        sampled({ max_tokens: 5, messages: [{ role: "user", content: [{ type: "text", text: "What is this?" }, image] }] }),
      ),
    );
    expect(withImage).toBeInstanceOf(Anthropic.BadRequestError);
    expect(messageOf(withImage)).toStartWith(
      'messages[0].content[1].type: content block type "image" is not supported: llamaport runs text-only models',
    );
    const document = { type: "document" as const, source: { type: "text" as const, media_type: "text/plain" as const, data: "a note" } };
    const withDocument = await failure(
      client.messages.create(sampled({ max_tokens: 5, messages: [{ role: "user", content: [document] }] })),
    );
    expect(withDocument).toBeInstanceOf(Anthropic.BadRequestError);
    expect(messageOf(withDocument)).toStartWith('messages[0].content[0].type: content block type "document" is not supported');
  });

  test("thinking: enabled or adaptive is refused by name; disabled is what every answer is", async () => {
    const enabled = await failure(
      client.messages.create({ ...sampled({ max_tokens: 5, messages: user("Hi") }), thinking: { type: "enabled", budget_tokens: 1024 } }),
    );
    expect(enabled).toBeInstanceOf(Anthropic.BadRequestError);
    expect(messageOf(enabled)).toStartWith('thinking: extended thinking ("enabled") is not available');
    const adaptive = await failure(
      client.messages.create({ ...sampled({ max_tokens: 5, messages: user("Hi") }), thinking: { type: "adaptive" } }),
    );
    expect(adaptive).toBeInstanceOf(Anthropic.BadRequestError);
    const disabled = await client.messages.create({ ...sampled({ max_tokens: 3, messages: user("Hi") }), thinking: { type: "disabled" } });
    expect(disabled.usage.output_tokens).toBe(3);
  });

  test("output_config.format constrains the answer to the JSON Schema", async () => {
    const schema = { type: "object", properties: { happy: { type: "boolean" } }, required: ["happy"], additionalProperties: false };
    const message = await client.messages.create({
      ...sampled({ max_tokens: 100, messages: user("Are you happy?") }, 1),
      output_config: { format: { type: "json_schema", schema } },
    });
    const block = message.content[0];
    expect(block?.type).toBe("text");
    expect(typeof JSON.parse(block?.type === "text" ? block.text : "").happy).toBe("boolean");
  });
});

describe("raw HTTP", () => {
  test("GET /v1/models: Anthropic's shape with anthropic-version, OpenAI's without", async () => {
    const anthropic = await fetch(`${server.url}/v1/models?limit=1`, { headers: { "anthropic-version": "2023-06-01" } });
    expect(await anthropic.json()).toMatchObject({
      data: [{ type: "model", id: "demo" }],
      has_more: true,
      first_id: "demo",
      last_id: "demo",
    });
    const after = await fetch(`${server.url}/v1/models?after_id=demo`, { headers: { "anthropic-version": "2023-06-01" } });
    expect(await after.json()).toMatchObject({ data: [{ id: "second" }], has_more: false, first_id: "second", last_id: "second" });
    const before = await fetch(`${server.url}/v1/models?before_id=second`, { headers: { "anthropic-version": "2023-06-01" } });
    expect(await before.json()).toMatchObject({ data: [{ id: "demo" }], has_more: false });
    const openai = (await (await fetch(`${server.url}/v1/models`)).json()) as { object: string; data: { id: string; object: string }[] };
    expect(openai.object).toBe("list");
    expect(openai.data.map((m) => m.object)).toEqual(["model", "model"]);
    const bad = await fetch(`${server.url}/v1/models?limit=0`, { headers: { "anthropic-version": "2023-06-01" } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: "limit: must be an integer between 1 and 1000" },
    });
    const missing = await fetch(`${server.url}/v1/models/nope`, { headers: { "anthropic-version": "2023-06-01" } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ type: "error", error: { type: "not_found_error", message: "model: nope" } });
  });

  test("server-side features are refused by name; fields that do not change a local answer are accepted", async () => {
    for (const [field, value] of [
      ["container", "container_1"],
      ["mcp_servers", [{ type: "url", url: "https://example.com", name: "x" }]],
      ["context_management", { edits: [] }],
      ["output_config", { effort: "high" }],
    ] as const) {
      const response = await messages({ model, max_tokens: 3, messages: user("Hi"), [field]: value });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { message: string } }).error.message).toStartWith(
        field === "output_config" ? "output_config.effort:" : `${field}:`,
      );
    }
    const accepted = await messages({
      model,
      max_tokens: 3,
      messages: user("Hi"),
      metadata: { user_id: "u1" },
      service_tier: "standard_only",
      speed: "standard",
      inference_geo: "us",
      cache_control: { type: "ephemeral" },
      thinking: { type: "between_tools" },
    });
    expect(accepted.status).toBe(200);
  });

  test("a stream is exactly Anthropic's named events, in order, each data's type equal to its event name", async () => {
    const response = await messages({ model, max_tokens: 6, temperature: 0, stream: true, messages: user("Hello there") });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/event-stream");
    const events = parseEvents((await readChunks(response)).text);
    const names = events.map((e) => e.event);
    expect(names.slice(0, 3)).toEqual(["message_start", "content_block_start", "ping"]);
    expect(names.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    const deltas = events.slice(3, -3);
    expect(deltas.length).toBeGreaterThan(0);
    for (const { event, data } of events) expect(data.type).toBe(event);

    const start = events[0]!.data;
    expect(start.message).toMatchObject({ type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null });
    expect(start.message.id).toMatch(/^msg_/);
    // The prompt's size is known before the first token, so message_start already carries it.
    expect(start.message.usage.output_tokens).toBe(0);
    const promptSize = (u: { input_tokens: number; cache_read_input_tokens: number }) => u.input_tokens + u.cache_read_input_tokens;
    expect(events[1]!.data).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    for (const { event, data } of deltas) {
      expect(event).toBe("content_block_delta");
      expect(Object.keys(data)).toEqual(["type", "index", "delta"]);
      expect(data.index).toBe(0);
      expect(data.delta).toEqual({ type: "text_delta", text: expect.any(String) });
    }
    expect(events.at(-3)!.data).toEqual({ type: "content_block_stop", index: 0 });
    const delta = events.at(-2)!.data;
    expect(delta.delta).toEqual({ stop_reason: "max_tokens", stop_sequence: null });
    expect(delta.usage.output_tokens).toBe(6);
    expect(promptSize(delta.usage)).toBeGreaterThan(0);
    expect(promptSize(start.message.usage)).toBe(promptSize(delta.usage));
    expect(events.at(-1)!.data).toEqual({ type: "message_stop" });

    const whole = (await (await messages({ model, max_tokens: 6, temperature: 0, messages: user("Hello there") })).json()) as any;
    expect(deltas.map((d) => d.data.delta.text).join("")).toBe(whole.content[0].text);
  });

  test("unknown extra fields are ignored and null sampling fields mean the default", async () => {
    const response = await messages({
      model,
      max_tokens: 3,
      messages: user("Hi"),
      metadata: { user_id: "u1" },
      tools: [],
      service_tier: "auto",
      temperature: null,
      stop_sequences: null,
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ type: "message", stop_reason: "max_tokens", usage: { output_tokens: 3 } });
  });

  const expectError = async (response: Response, status: number, type: string, mentions?: string) => {
    expect(response.status).toBe(status);
    expect(response.headers.get("content-type")).toStartWith("application/json");
    const body = (await response.json()) as { type: string; error: { type: string; message: string } };
    expect(body).toEqual({ type: "error", error: { type, message: expect.any(String) } });
    if (mentions) expect(body.error.message).toContain(mentions);
  };

  test("missing max_tokens is a 400 invalid_request_error naming max_tokens", async () => {
    await expectError(await messages({ model, messages: user("Hi") }), 400, "invalid_request_error", "max_tokens");
    await expectError(await messages({ model, max_tokens: 0, messages: user("Hi") }), 400, "invalid_request_error", "max_tokens");
  });

  test("an unknown model is a 404 not_found_error, streamed or not (the stream waits for the engine before its headers)", async () => {
    const body = { model: "no-such-model", max_tokens: 5, messages: user("Hi") };
    await expectError(await messages(body), 404, "not_found_error", "no-such-model");
    await expectError(await messages({ ...body, stream: true }), 404, "not_found_error", "no-such-model");
    await expectError(
      await postJson(`${server.url}/v1/messages/count_tokens`, { model: "no-such-model", messages: user("Hi") }),
      404,
      "not_found_error",
    );
  });

  test("malformed JSON is a 400 invalid_request_error", async () => {
    await expectError(await messages("{not json"), 400, "invalid_request_error", "malformed JSON");
  });

  test("content blocks other than text are a 400 naming the block's field", async () => {
    const image = { type: "image", source: { type: "base64", media_type: "image/png", data: "" } };
    await expectError(
      await messages({ model, max_tokens: 5, messages: [{ role: "user", content: [{ type: "text", text: "Look:" }, image] }] }),
      400,
      "invalid_request_error",
      "messages[0].content[1].type",
    );
    await expectError(
      await messages({ model, max_tokens: 5, system: [{ type: "tool_result" }], messages: user("Hi") }),
      400,
      "invalid_request_error",
      "system[0].type",
    );
    await expectError(
      await messages({ model, max_tokens: 5, messages: [{ role: "tool", content: "x" }] }),
      400,
      "invalid_request_error",
      "messages[0].role",
    );
  });
});

describe("error hooks", () => {
  // A stream that fails after its headers cannot be provoked through the demo model, so the hooks are called directly.
  const problem = (code: ProblemCode, status: number): Problem => ({ code, status, message: `${code} happened` });
  const cases: [ProblemCode, number, string][] = [
    ["invalid_request", 400, "invalid_request_error"],
    ["unauthorized", 401, "authentication_error"],
    ["forbidden", 403, "permission_error"],
    ["too_large", 413, "request_too_large"],
    ["unsupported_media_type", 415, "invalid_request_error"],
    ["context_exceeded", 400, "invalid_request_error"],
    ["not_supported", 501, "invalid_request_error"],
    ["not_found", 404, "not_found_error"],
    ["busy", 503, "overloaded_error"],
    ["unavailable", 503, "overloaded_error"],
    ["internal", 500, "api_error"],
  ];

  test.each(cases)("%s (status %d) renders as %s", async (code, status, type) => {
    const { default: plugin } = await import("../../plugins/anthropic.ts");
    const expected = { type: "error", error: { type, message: `${code} happened` } };
    expect(plugin.error!(problem(code, status))).toEqual(expected);
    const event = plugin.streamError!(problem(code, status)) as SseMessage;
    expect(event.event).toBe("error");
    expect(event.data).toEqual(expected);
  });
});
