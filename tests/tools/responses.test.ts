/** The OpenAI Responses API end to end: the official `openai` client's responses resource and raw HTTP, against the real server. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
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

noteSharedModels("tests/tools/responses.test.ts");

let server: TestServer;
let client: OpenAI;
beforeAll(async () => {
  server = await startTestServer(toolModels);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "x", maxRetries: 0 });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const tools: OpenAI.Responses.FunctionTool[] = [
  { type: "function", name: "get_weather", description: "Get the weather in a city", parameters: weatherParameters, strict: true },
  { type: "function", name: "get_time", description: "Get the time in a time zone", parameters: timeParameters, strict: true },
];
const input = "What is the weather in Paris?";
const base = { tools, temperature: 0, max_output_tokens: 80 };
const responsesUrl = () => `${server.url}/v1/responses`;

function functionCalls(response: OpenAI.Responses.Response) {
  return response.output.filter((item): item is OpenAI.Responses.ResponseFunctionToolCall => item.type === "function_call");
}

describe.each(toolModelNames)("the openai client's responses on %s", (model) => {
  test("plain text: one message item, output_text, usage; streamed events numbered from 0", async () => {
    const response = await client.responses.create({ model, input: "Once upon a time", max_output_tokens: 6, temperature: 0 });
    expect(response.id).toMatch(/^resp_/);
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(response.output).toHaveLength(1);
    expect(response.output_text.length).toBeGreaterThan(0);
    expect(response.usage!.output_tokens).toBe(6);
    const stream = client.responses.stream({ model, input: "Once upon a time", max_output_tokens: 6, temperature: 0 });
    const numbers: number[] = [];
    const doneItems: unknown[] = [];
    for await (const event of stream) {
      numbers.push(event.sequence_number);
      if (event.type === "response.output_item.done") doneItems.push(event.item);
    }
    expect(numbers).toEqual(numbers.map((_, i) => i));
    const final = await stream.finalResponse();
    expect(final.output_text).toBe(response.output_text);
    // Cut by max_output_tokens, the message is incomplete, streamed or not (its output_item.done says so too).
    expect(response.output[0]).toMatchObject({ type: "message", status: "incomplete" });
    expect(final.output[0]).toMatchObject({ type: "message", status: "incomplete" });
    expect(doneItems).toEqual([expect.objectContaining({ id: final.output[0]!.id, status: "incomplete" })]);
  });

  test("required: a function_call item with call_id, name and JSON arguments", async () => {
    const response = await client.responses.create({ ...base, model, input, tool_choice: "required" });
    expect(response.status).toBe("completed");
    const [call] = functionCalls(response);
    expect(call).toMatchObject({ type: "function_call", status: "completed" });
    expect(call!.id).toMatch(/^fc_/);
    expect(call!.call_id).toMatch(/^call_/);
    const args = JSON.parse(call!.arguments);
    expect(call!.name === "get_weather" ? isWeatherArguments(args) : isTimeArguments(args)).toBe(true);
    expect(response.output_text).toBe("");
  });

  test("required, streamed: argument deltas join to the call of the final response", async () => {
    const stream = client.responses.stream({ ...base, model, input, tool_choice: "required" });
    let deltas = "";
    let done = "";
    for await (const event of stream) {
      if (event.type === "response.function_call_arguments.delta") deltas += event.delta;
      if (event.type === "response.function_call_arguments.done") done = event.arguments;
    }
    const [call] = functionCalls(await stream.finalResponse());
    expect(deltas).toBe(done);
    expect(call!.arguments).toBe(done);
    expect(JSON.parse(done)).toBeObject();
  });

  test("a named function is the one called; none answers in text", async () => {
    const named = await client.responses.create({ ...base, model, input, tool_choice: { type: "function", name: "get_time" } });
    const [call] = functionCalls(named);
    expect(call!.name).toBe("get_time");
    expect(isTimeArguments(JSON.parse(call!.arguments))).toBe(true);
    const none = await client.responses.create({ ...base, model, input, tool_choice: "none", max_output_tokens: 6 });
    expect(functionCalls(none)).toEqual([]);
    expect(none.output_text.length).toBeGreaterThan(0);
  });

  test("call -> function_call_output -> answer, with the output items sent back as they came", async () => {
    const first = await client.responses.create({ ...base, model, input, tool_choice: "required", parallel_tool_calls: false });
    const [call] = functionCalls(first);
    const next = await client.responses.create({
      ...base,
      model,
      max_output_tokens: 10,
      input: [
        { role: "user", content: input },
        // Sent back as they came (the SDK's docs do this); only function calls are in this output.
        ...(first.output as OpenAI.Responses.ResponseInputItem[]),
        { type: "function_call_output", call_id: call!.call_id, output: JSON.stringify({ temperature: 21 }) },
      ],
    });
    expect(functionCalls(next)).toEqual([]);
    expect(next.output_text.length).toBeGreaterThan(0);
    if (model === "tools") expect(next).toMatchObject({ output_text: "done.", status: "completed" });
    expect(next.usage!.input_tokens_details.cached_tokens).toBeGreaterThan(first.usage!.input_tokens / 2);
  });
});

test("auto on a model whose template has tool syntax calls by itself", async () => {
  const response = await client.responses.create({ ...base, model: "tools", input, instructions: "Use the tools." });
  expect(functionCalls(response)).toHaveLength(1);
});

test("max_output_tokens inside the arguments: an incomplete function_call item, the same streamed and not", async () => {
  const note: OpenAI.Responses.FunctionTool = {
    type: "function",
    name: "note",
    parameters: { type: "object", properties: { text: { type: "string", minLength: 60, maxLength: 80 } } },
    strict: false,
  };
  const request = { model: "tools", input, tools: [note], tool_choice: "required" as const, max_output_tokens: 8, temperature: 0 };
  const whole = await client.responses.create(request);
  expect(whole).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
  expect(whole.output.map((item) => item.type)).toEqual(["function_call"]);
  const [call] = functionCalls(whole);
  expect(call).toMatchObject({ status: "incomplete", name: "note" });
  expect(call!.arguments).toStartWith("{");
  expect(() => JSON.parse(call!.arguments)).toThrow();
  // Streamed, the item was announced by output_item.added: the final response holds it too, with what the deltas sent.
  const stream = client.responses.stream(request);
  let deltas = "";
  const added: string[] = [];
  for await (const event of stream) {
    if (event.type === "response.function_call_arguments.delta") deltas += event.delta;
    if (event.type === "response.output_item.added") added.push(event.item.id!);
  }
  const final = await stream.finalResponse();
  expect(final.status).toBe("incomplete");
  const [streamedCall] = functionCalls(final);
  expect(streamedCall).toMatchObject({ status: "incomplete", name: "note", arguments: deltas });
  expect(added).toEqual([streamedCall!.id!]);
  expect(deltas).toBe(call!.arguments);
});

test("raw HTTP: the exact event sequence of a streamed call", async () => {
  const response = await postJson(responsesUrl(), {
    ...base,
    model: "tools",
    input,
    tool_choice: { type: "function", name: "get_weather" },
    stream: true,
  });
  expect(response.status).toBe(200);
  const events = sseEvents((await readChunks(response)).text);
  for (const [i, e] of events.entries()) {
    expect(e.event).toBe(e.data.type);
    expect(e.data.sequence_number).toBe(i);
  }
  const types = events.map((e) => e.data.type);
  const deltas = types.filter((t) => t === "response.function_call_arguments.delta").length;
  expect(deltas).toBeGreaterThan(2);
  expect(types).toEqual([
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    ...Array(deltas).fill("response.function_call_arguments.delta"),
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
  ]);
  const [created, , added] = events.map((e) => e.data);
  expect(created.response).toMatchObject({ object: "response", status: "in_progress", model: "tools", output: [], store: false });
  expect(added.output_index).toBe(0);
  expect(added.item).toMatchObject({ type: "function_call", status: "in_progress", name: "get_weather", arguments: "" });
  const itemId = added.item.id;
  const pieces = events.filter((e) => e.data.type === "response.function_call_arguments.delta").map((e) => e.data);
  for (const piece of pieces) expect(piece).toMatchObject({ item_id: itemId, output_index: 0 });
  const json = pieces.map((p) => p.delta).join("");
  expect(isWeatherArguments(JSON.parse(json))).toBe(true);
  const completed = events.at(-1)!.data.response;
  expect(completed.status).toBe("completed");
  expect(completed.output).toEqual([
    { id: itemId, type: "function_call", status: "completed", call_id: added.item.call_id, name: "get_weather", arguments: json },
  ]);
  expect(completed.usage.output_tokens).toBeGreaterThan(3);
});

test("raw HTTP: a streamed text answer opens a message item and a content part, then closes them", async () => {
  const response = await postJson(responsesUrl(), {
    model: "tools",
    input,
    tool_choice: "none",
    max_output_tokens: 4,
    temperature: 0,
    stream: true,
  });
  const events = sseEvents((await readChunks(response)).text).map((e) => e.data);
  const types = events.map((e) => e.type);
  expect(types).toEqual([
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    ...Array(types.length - 8).fill("response.output_text.delta"),
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.incomplete",
  ]);
  const text = events
    .filter((e) => e.type === "response.output_text.delta")
    .map((e) => e.delta)
    .join("");
  expect(events.find((e) => e.type === "response.output_text.done").text).toBe(text);
  expect(events.at(-1).response.output[0].content[0].text).toBe(text);
});

test("text.format json_schema constrains the text", async () => {
  const response = await client.responses.create({
    model: "tools",
    input: "Give me a flag",
    temperature: 0,
    max_output_tokens: 60,
    text: {
      format: { type: "json_schema", name: "flag", schema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } },
    },
  });
  expect(typeof JSON.parse(response.output_text).ok).toBe("boolean");
});

describe("refused with a 400 naming the field", () => {
  test.each([
    [{ previous_response_id: "resp_1" }, "previous_response_id"],
    [{ store: true }, "store"],
    [{ conversation: "conv_1" }, "conversation"],
    [{ background: true }, "background"],
    [{ tools: [{ type: "web_search" }] }, "tools[0].type"],
    [
      { tools: [{ type: "function", name: "f", parameters: { type: "object", properties: { a: { not: {} } } } }] },
      "tools[0].parameters.properties.a.not",
    ],
    [{ tool_choice: { type: "function", name: "nope" } }, "tool_choice"],
    [{ input: [{ type: "item_reference", id: "x" }] }, "input[0].type"],
    [{ input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }, "input[0].content[0].type"],
    [{ input: [{ type: "function_call_output", call_id: "nobody", output: "x" }] }, "input"],
    [{ text: { format: { type: "json_object" } } }, "text.format"],
  ])("%j", async (extra, param) => {
    const response = await postJson(responsesUrl(), { model: "tools", input, tools, ...extra });
    expect(response.status).toBe(400);
    const { error } = await bodyOf(response);
    expect(error.param).toBe(param);
    expect(error.type).toBe("invalid_request_error");
  });

  test("stored responses do not exist; other /v1 paths keep the openai plugin's errors", async () => {
    const missing = await fetch(`${server.url}/v1/responses/resp_123`);
    expect(missing.status).toBe(404);
    expect((await bodyOf(missing)).error.message).toContain("does not store responses");
    const elsewhere = await postJson(`${server.url}/v1/chat/completions`, "{oops");
    expect(elsewhere.status).toBe(400);
    expect((await bodyOf(elsewhere)).error.type).toBe("invalid_request_error");
    const plugins = (await bodyOf(fetch(`${server.url}/plugins`))).plugins as { id: string; routes: string[] }[];
    expect(plugins.find((p) => p.id === "responses")?.routes).toEqual(["POST /v1/responses", "GET /v1/responses/:id"]);
  });
});
