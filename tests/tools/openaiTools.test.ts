/** OpenAI chat completions with tools, end to end: the official `openai` client and raw HTTP against the real server and engine. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { bodyOf, noteSharedModels, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";
import {
  isTimeArguments,
  isWeatherArguments,
  sseEvents,
  timeParameters,
  toolModelNames,
  toolModels,
  weatherParameters,
} from "../support/tools.ts";

noteSharedModels("tests/tools/openaiTools.test.ts");

let server: TestServer;
let client: OpenAI;
beforeAll(async () => {
  server = await startTestServer({
    ...toolModels,
    solo: { source: "synthetic:tiny-tools", context: 4096, parallel: 1 },
    small: { source: "synthetic:tiny-tools", context: 256, parallel: 1 },
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "x", maxRetries: 0 });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const tools: OpenAI.ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Get the weather in a city", parameters: weatherParameters } },
  { type: "function", function: { name: "get_time", description: "Get the time in a time zone", parameters: timeParameters } },
];
const ask: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];
const base = { tools, temperature: 0, max_tokens: 80 };

describe.each(toolModelNames)("the openai client on %s", (model) => {
  test("required: a call whose arguments match the schema, as a JSON string; finish_reason tool_calls", async () => {
    const completion = await client.chat.completions.create({ ...base, model, messages: ask, tool_choice: "required" });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe("tool_calls");
    expect(choice!.message.content).toBeNull();
    const [call] = choice!.message.tool_calls!;
    expect(call!.type).toBe("function");
    expect(call!.id).toMatch(/^call_[0-9a-f]{24}$/);
    if (call!.type !== "function") throw new Error("a function call");
    const args = JSON.parse(call!.function.arguments);
    expect(call!.function.name === "get_weather" ? isWeatherArguments(args) : isTimeArguments(args)).toBe(true);
    expect(completion.usage!.completion_tokens).toBeGreaterThan(3);
  });

  test("required, streamed: id and name first, arguments in pieces that join to the same call", async () => {
    const whole = await client.chat.completions.create({ ...base, model, messages: ask, tool_choice: "required" });
    const stream = await client.chat.completions.create({ ...base, model, messages: ask, tool_choice: "required", stream: true });
    const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      deltas.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("tool_calls");
    expect(deltas[0]).toMatchObject({ index: 0, type: "function", function: { arguments: "" } });
    expect(deltas[0]!.id).toMatch(/^call_/);
    expect(deltas.length).toBeGreaterThan(3);
    for (const delta of deltas.slice(1)) expect(delta.id).toBeUndefined();
    const streamed = { name: deltas[0]!.function!.name, arguments: JSON.parse(deltas.map((d) => d.function?.arguments ?? "").join("")) };
    const [call] = whole.choices[0]!.message.tool_calls!;
    if (call!.type !== "function") throw new Error("a function call");
    // Greedy decoding: the streamed call is the same call.
    expect(streamed).toEqual({ name: call!.function.name, arguments: JSON.parse(call!.function.arguments) });
  });

  test("a named tool is the one called", async () => {
    const completion = await client.chat.completions.create({
      ...base,
      model,
      messages: ask,
      tool_choice: { type: "function", function: { name: "get_time" } },
    });
    const [call] = completion.choices[0]!.message.tool_calls!;
    if (call!.type !== "function") throw new Error("a function call");
    expect(call!.function.name).toBe("get_time");
    expect(isTimeArguments(JSON.parse(call!.function.arguments))).toBe(true);
  });

  test("none: text and no call", async () => {
    const completion = await client.chat.completions.create({ ...base, model, messages: ask, tool_choice: "none", max_tokens: 8 });
    const [choice] = completion.choices;
    expect(choice!.message.tool_calls).toBeUndefined();
    expect(choice!.finish_reason).toBe("length");
    expect(choice!.message.content!.length).toBeGreaterThan(0);
  });

  test("call -> result -> answer: the tool message feeds the next turn, which answers in text", async () => {
    const first = await client.chat.completions.create({
      ...base,
      model,
      messages: ask,
      tool_choice: "required",
      parallel_tool_calls: false,
    });
    const assistant = first.choices[0]!.message;
    expect(assistant.tool_calls).toHaveLength(1);
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      ...ask,
      assistant,
      { role: "tool", tool_call_id: assistant.tool_calls![0]!.id, content: JSON.stringify({ temperature: 21, sky: "clear" }) },
    ];
    const answer = await client.chat.completions.create({ ...base, model, messages, max_tokens: 12 });
    expect(answer.choices[0]!.message.tool_calls).toBeUndefined();
    expect(answer.choices[0]!.message.content!.length).toBeGreaterThan(0);
    // The writer's tool model answers a tool result with " done." and ends its turn.
    if (model === "tools") expect(answer.choices[0]).toMatchObject({ message: { content: "done." }, finish_reason: "stop" });
    // The whole first turn was already in the sequence: only the new part is evaluated.
    expect(answer.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(first.usage!.prompt_tokens / 2);
  });
});

test("auto on a model whose template has tool syntax: the model calls by itself", async () => {
  const completion = await client.chat.completions.create({ ...base, model: "tools", messages: ask });
  expect(completion.choices[0]!.finish_reason).toBe("tool_calls");
  expect(completion.choices[0]!.message.tool_calls).toHaveLength(1);
});

test.skipIf(!toolModelNames.includes("stories"))("auto on a model that does not call: plain text", async () => {
  const completion = await client.chat.completions.create({ ...base, model: "stories", messages: ask, max_tokens: 10 });
  expect(completion.choices[0]!.message.tool_calls).toBeUndefined();
  expect(completion.choices[0]!.finish_reason).toBe("length");
});

test("raw HTTP: the exact streamed sequence of a call", async () => {
  const response = await postJson(`${server.url}/v1/chat/completions`, {
    ...base,
    model: "tools",
    messages: ask,
    tool_choice: { type: "function", function: { name: "get_weather" } },
    stream: true,
    stream_options: { include_usage: true },
  });
  expect(response.status).toBe(200);
  const events = sseEvents((await readChunks(response)).text);
  expect(events.pop()).toEqual({ event: "done", data: "[DONE]" });
  const usage = events.pop()!.data;
  expect(usage.choices).toEqual([]);
  expect(usage.usage.completion_tokens).toBeGreaterThan(3);
  const deltas = events.map((e) => e.data.choices[0]);
  expect(deltas[0]).toEqual({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
  const head = deltas[1].delta.tool_calls[0];
  expect(head).toEqual({ index: 0, id: head.id, type: "function", function: { name: "get_weather", arguments: "" } });
  const pieces = deltas.slice(2, -1);
  expect(pieces.length).toBeGreaterThan(2);
  for (const piece of pieces) {
    expect(Object.keys(piece.delta)).toEqual(["tool_calls"]);
    expect(piece.delta.tool_calls).toEqual([{ index: 0, function: { arguments: piece.delta.tool_calls[0].function.arguments } }]);
    expect(piece.finish_reason).toBeNull();
  }
  const json = pieces.map((p) => p.delta.tool_calls[0].function.arguments).join("");
  expect(isWeatherArguments(JSON.parse(json))).toBe(true);
  // Held back: the grammar's "\n\n\n\n" end never reaches the client.
  expect(json).toBe(json.trim());
  expect(deltas.at(-1)).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: "tool_calls" });
  expect(new Set(events.map((e) => e.data.id)).size).toBe(1);
});

test("n choices with tools: each choice makes its own call, streamed under its own choice index", async () => {
  const request = { ...base, model: "tools", messages: ask, tool_choice: "required" as const, n: 2 };
  const whole = await client.chat.completions.create(request);
  expect(whole.choices.map((c) => [c.index, c.finish_reason, c.message.tool_calls?.length])).toEqual([
    [0, "tool_calls", 1],
    [1, "tool_calls", 1],
  ]);
  const heads = new Map<number, string>();
  const json = new Map<number, string>();
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    const [choice] = chunk.choices;
    for (const call of choice?.delta.tool_calls ?? []) {
      if (call.id) heads.set(choice!.index, call.id);
      json.set(choice!.index, (json.get(choice!.index) ?? "") + (call.function?.arguments ?? ""));
    }
  }
  expect([...heads.keys()].sort()).toEqual([0, 1]);
  expect(heads.get(0)).not.toBe(heads.get(1));
  for (const index of [0, 1]) expect(JSON.parse(json.get(index)!)).toBeObject();
});

/** A tool whose arguments cannot fit in 8 tokens: the call is cut short inside them. */
const longNote: OpenAI.ChatCompletionTool[] = [
  {
    type: "function",
    function: { name: "note", parameters: { type: "object", properties: { text: { type: "string", minLength: 60, maxLength: 80 } } } },
  },
];

test("running out of tokens inside the arguments: finish_reason length and the call as far as it came, never raw call text", async () => {
  const request = { model: "tools", messages: ask, tools: longNote, tool_choice: "required" as const, max_tokens: 8, temperature: 0 };
  const whole = await client.chat.completions.create(request);
  const [choice] = whole.choices;
  expect(choice!.finish_reason).toBe("length");
  expect(choice!.message.content).toBeNull();
  const [call] = choice!.message.tool_calls!;
  if (call?.type !== "function") throw new Error("a function call");
  expect(call.function.name).toBe("note");
  expect(call.id).toMatch(/^call_[0-9a-f]{24}$/);
  // The arguments as OpenAI gives them when max_tokens cuts a call: the start of the JSON, which does not parse.
  expect(call.function.arguments).toStartWith("{");
  expect(() => JSON.parse(call.function.arguments)).toThrow();
  expect(call.function.arguments).not.toContain("<tool_call>");
  // The same call the stream sends, piece by piece (temperature 0).
  const streamed = await client.chat.completions.stream(request).finalChatCompletion();
  expect(streamed.choices[0]!.finish_reason).toBe("length");
  const [streamedCall] = streamed.choices[0]!.message.tool_calls!;
  expect(streamedCall?.type === "function" && streamedCall.function.arguments).toBe(call.function.arguments);
});

test("a client that goes away during a forced call frees its sequence at once", async () => {
  const long = [
    {
      type: "function",
      function: { name: "note", parameters: { type: "object", properties: { text: { type: "string", minLength: 1500 } } } },
    },
  ];
  const controller = new AbortController();
  const response = await postJson(
    `${server.url}/v1/chat/completions`,
    { model: "solo", messages: [{ role: "user", content: "Note" }], tools: long, tool_choice: "required", stream: true },
    { signal: controller.signal },
  );
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  // Until the first piece of the arguments: the call is being generated.
  while (!/"arguments":"[^"]/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the stream ended early: ${seen}`);
    seen += decoder.decode(value, { stream: true });
  }
  const solo = () => server.engine.loadedModels().find((m) => m.name === "solo");
  expect(solo()?.activeSequences).toBe(1);
  controller.abort();
  await reader.cancel().catch(() => {});
  await waitFor(
    async () => solo(),
    (m) => m?.activeSequences === 0,
  );
  const next = await client.chat.completions.create({ model: "solo", messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
  expect(next.choices[0]!.finish_reason).toBe("length");
});

test("the tool documentation counts toward the prompt: too long for the context is a 400", async () => {
  const response = await postJson(`${server.url}/v1/chat/completions`, { model: "small", messages: ask, tools, tool_choice: "required" });
  expect(response.status).toBe(400);
  const { error } = await bodyOf(response);
  expect(error.code).toBe("context_length_exceeded");
  expect(error.message).toContain("prompt too long");
});

test("stop strings end the text of a turn with tools (after a tool result)", async () => {
  const messages: OpenAI.ChatCompletionMessageParam[] = [
    ...ask,
    {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "c1", type: "function", function: { name: "get_time", arguments: '{"tz":"UTC"}' } }],
    },
    { role: "tool", tool_call_id: "c1", content: "noon" },
  ];
  const stopped = await client.chat.completions.create({ ...base, model: "tools", messages, stop: ["ne."] });
  expect(stopped.choices[0]).toMatchObject({ message: { content: "do" }, finish_reason: "stop" });
});

describe("refused with a 400 naming the field", () => {
  const send = (extra: Record<string, unknown>) =>
    postJson(`${server.url}/v1/chat/completions`, { model: "tools", messages: ask, tools, ...extra });
  test.each([
    [
      { tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { x: { not: {} } } } } }] },
      "tools[0].function.parameters.properties.x.not",
    ],
    [{ tools: [{ type: "function", function: { name: "two words" } }] }, "tools[0].function.name"],
    // A schema llama.cpp cannot turn into a grammar (repetitions past its limit of 2000): refused before any output.
    [
      {
        tools: [
          tools[0],
          {
            type: "function",
            function: { name: "f", parameters: { type: "object", properties: { t: { type: "string", minLength: 5000 } } } },
          },
        ],
      },
      "tools[1].function.parameters",
    ],
    [{ tools: [{ type: "custom", custom: { name: "f" } }] }, "tools[0].type"],
    [{ tools: [{ type: "function" }] }, "tools[0].function"],
    [{ tool_choice: { type: "function", function: { name: "missing" } } }, "tool_choice"],
    [{ response_format: { type: "json_object" } }, "response_format"],
    [{ grammar: 'root ::= "x"' }, "grammar"],
    // The chat route names the engine's `logprobs` after its own count field.
    [{ logprobs: true }, "top_logprobs"],
    [{ functions: [{ name: "f" }] }, "functions"],
    [
      {
        messages: [
          ...ask,
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "c1", type: "function", function: { name: "get_time", arguments: "{not json" } }],
          },
          { role: "tool", tool_call_id: "c1", content: "noon" },
        ],
      },
      "messages[1].tool_calls[0].function.arguments",
    ],
    [{ messages: [...ask, { role: "tool", tool_call_id: "nobody", content: "x" }] }, "messages"],
  ])("%j", async (extra, param) => {
    const response = await send(extra);
    expect(response.status).toBe(400);
    const { error } = await bodyOf(response);
    expect(error.type).toBe("invalid_request_error");
    expect(error.param).toBe(param);
    expect(error.message).toStartWith(param);
  });

  test("the openai client surfaces it as a BadRequestError", async () => {
    const error = await client.chat.completions
      .create({ model: "tools", messages: ask, tools, tool_choice: { type: "function", function: { name: "missing" } } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("tool_choice");
  });
});
