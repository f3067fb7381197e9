/** Anthropic's /v1/messages with tools, end to end: the official `@anthropic-ai/sdk` client and raw SSE against the real server. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { bodyOf, noteSharedModels, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";
import {
  isTimeArguments,
  isWeatherArguments,
  sseEvents,
  timeParameters,
  toolModelNames,
  toolModels,
  weatherParameters,
} from "../support/tools.ts";

noteSharedModels("tests/tools/anthropicTools.test.ts");

let server: TestServer;
let client: Anthropic;
beforeAll(async () => {
  server = await startTestServer(toolModels);
  client = new Anthropic({ baseURL: server.url, apiKey: "x", maxRetries: 0 });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const tools: Anthropic.Tool[] = [
  { name: "get_weather", description: "Get the weather in a city", input_schema: weatherParameters as Anthropic.Tool.InputSchema },
  { name: "get_time", description: "Get the time in a time zone", input_schema: timeParameters as Anthropic.Tool.InputSchema },
];
const messages: Anthropic.MessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
type Params = Anthropic.MessageCreateParamsNonStreaming;
/** The SDK's 1.x types dropped the sampling fields; it still sends them and the wire format takes them. */
const params = (model: string, extra: Partial<Params>) => ({ model, max_tokens: 80, temperature: 0, tools, messages, ...extra }) as Params;
const toolUses = (message: Anthropic.Message) => message.content.filter((b): b is Anthropic.ToolUseBlock => b.type === "tool_use");
const valid = (block: Anthropic.ToolUseBlock) =>
  block.name === "get_weather" ? isWeatherArguments(block.input) : isTimeArguments(block.input);

describe.each(toolModelNames)("the Anthropic SDK on %s", (model) => {
  test("tool_choice any: a tool_use block with an input object; stop_reason tool_use", async () => {
    const message = await client.messages.create(params(model, { tool_choice: { type: "any" } }));
    expect(message.stop_reason).toBe("tool_use");
    expect(message.content.map((b) => b.type)).toEqual(["tool_use"]);
    const [block] = toolUses(message);
    expect(block!.id).toMatch(/^call_/);
    expect(valid(block!)).toBe(true);
    expect(message.usage.output_tokens).toBeGreaterThan(3);
  });

  test("streamed: input_json_delta pieces build the same input as the final message", async () => {
    const stream = client.messages.stream(params(model, { tool_choice: { type: "any" } }));
    let json = "";
    stream.on("inputJson", (partial) => {
      json += partial;
    });
    const message = await stream.finalMessage();
    const [block] = toolUses(message);
    expect(message.stop_reason).toBe("tool_use");
    expect(JSON.parse(json)).toEqual(block!.input);
    expect(valid(block!)).toBe(true);
  });

  test("countTokens is the prompt messages.create evaluates: template, system and tool documentation included", async () => {
    const bodies: Partial<Params>[] = [
      {},
      { system: [{ type: "text", text: "Answer briefly." }] },
      { tools },
      { tools, tool_choice: { type: "any" } },
      // Tools the model is not shown (tool choice none) are not counted.
      { tools, tool_choice: { type: "none" } },
    ];
    for (const extra of bodies) {
      const request = { model, messages, ...extra } as Anthropic.MessageCountTokensParams;
      const counted = await client.messages.countTokens(request);
      const made = await client.messages.create(params(model, { ...extra, tools: extra.tools, max_tokens: 1 }));
      expect({ extra, tokens: counted.input_tokens }).toEqual({
        extra,
        tokens: made.usage.input_tokens + (made.usage.cache_read_input_tokens ?? 0),
      });
    }
  });

  test("tool_choice tool names the tool; none answers in text", async () => {
    const named = await client.messages.create(params(model, { tool_choice: { type: "tool", name: "get_time" } }));
    expect(toolUses(named).map((b) => b.name)).toEqual(["get_time"]);
    const none = await client.messages.create(params(model, { tool_choice: { type: "none" }, max_tokens: 6 }));
    expect(none.content.map((b) => b.type)).toEqual(["text"]);
    expect(none.stop_reason).toBe("max_tokens");
  });

  test("call -> tool_result in the next user turn -> a text answer", async () => {
    const first = await client.messages.create(params(model, { tool_choice: { type: "any", disable_parallel_tool_use: true } }));
    const [block] = toolUses(first);
    const answer = await client.messages.create(
      params(model, {
        max_tokens: 10,
        messages: [
          ...messages,
          { role: "assistant", content: first.content },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: block!.id, content: [{ type: "text", text: "21 degrees, clear" }] }],
          },
        ],
      }),
    );
    expect(answer.content.map((b) => b.type)).toEqual(["text"]);
    if (model === "tools") expect(answer).toMatchObject({ content: [{ type: "text", text: "done." }], stop_reason: "end_turn" });
    expect(answer.usage.cache_read_input_tokens).toBeGreaterThan(first.usage.input_tokens / 2);
  });
});

test("auto on a model whose template has tool syntax calls by itself", async () => {
  const message = await client.messages.create(params("tools", {}));
  expect(message.stop_reason).toBe("tool_use");
});

test("max_tokens inside the input: the tool_use block stays, last, as streamed; stop_reason max_tokens", async () => {
  const note: Anthropic.Tool = {
    name: "note",
    input_schema: { type: "object", properties: { text: { type: "string", minLength: 60, maxLength: 80 } } },
  };
  const request = params("tools", { tools: [note], tool_choice: { type: "any" }, max_tokens: 8 });
  const whole = await client.messages.create(request);
  expect(whole.stop_reason).toBe("max_tokens");
  // As Anthropic answers a call cut short: the incomplete tool_use block is the last one (its input never completed).
  expect(whole.content as unknown[]).toEqual([{ type: "tool_use", id: expect.stringMatching(/^call_/), name: "note", input: {} }]);
  const streamed = await client.messages.stream(request).finalMessage();
  expect(streamed.stop_reason).toBe("max_tokens");
  expect(streamed.content.map((b) => b.type === "tool_use" && b.name)).toEqual(["note"]);
});

test("raw SSE: the exact event sequence of a streamed call", async () => {
  const response = await postJson(`${server.url}/v1/messages`, {
    ...params("tools", { tool_choice: { type: "tool", name: "get_weather" } }),
    stream: true,
  });
  expect(response.status).toBe(200);
  const events = sseEvents((await readChunks(response)).text);
  for (const e of events) expect(e.event).toBe(e.data.type);
  const names = events.map((e) => e.event);
  const deltas = names.filter((n) => n === "content_block_delta").length;
  expect(deltas).toBeGreaterThan(2);
  expect(names).toEqual([
    "message_start",
    "content_block_start",
    "ping",
    ...Array(deltas).fill("content_block_delta"),
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  const start = events[1]!.data;
  expect(start).toEqual({
    type: "content_block_start",
    index: 0,
    content_block: { type: "tool_use", id: start.content_block.id, name: "get_weather", input: {} },
  });
  const pieces = events.filter((e) => e.event === "content_block_delta").map((e) => e.data);
  for (const piece of pieces)
    expect(piece).toEqual({
      type: "content_block_delta",
      index: 0,
      delta: { type: "input_json_delta", partial_json: piece.delta.partial_json },
    });
  expect(isWeatherArguments(JSON.parse(pieces.map((p) => p.delta.partial_json).join("")))).toBe(true);
  expect(events.at(-3)!.data).toEqual({ type: "content_block_stop", index: 0 });
  expect(events.at(-2)!.data.delta).toEqual({ stop_reason: "tool_use", stop_sequence: null });
});

describe("refused with a 400 naming the field", () => {
  test.each([
    [{ tools: [{ type: "web_search_20250305", name: "web_search" }] }, "tools[0].type"],
    [{ tools: [{ name: "f" }] }, "tools[0].input_schema"],
    [
      { tools: [{ name: "f", input_schema: { type: "object", properties: { a: { not: {} } } } }] },
      "tools[0].input_schema.properties.a.not",
    ],
    [{ tool_choice: { type: "tool", name: "nope" } }, "tool_choice"],
    [{ tool_choice: { type: "tool" } }, "tool_choice.name"],
    [{ messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_x", content: "x" }] }] }, "messages"],
    [{ messages: [{ role: "user", content: [{ type: "image", source: {} }] }] }, "messages[0].content[0].type"],
  ])("%j", async (extra, field) => {
    const response = await postJson(`${server.url}/v1/messages`, { ...params("tools", {}), ...extra });
    expect(response.status).toBe(400);
    const body = await bodyOf(response);
    expect(body.type).toBe("error");
    expect(body.error.type).toBe("invalid_request_error");
    expect(body.error.message).toStartWith(field);
  });
});
