/**
 * Ollama's /api/chat with tools, end to end: the official `ollama` client and raw NDJSON. Ollama has no tool choice:
 * a model calls when it decides to, so calls come from the writer's tiny-tools model (it calls at the start of every
 * answer to a user) and the trained stories model shows a model that answers in text.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Ollama, type Tool } from "ollama";
import { bodyOf, noteSharedModels, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";
import { isTimeArguments, isWeatherArguments, timeParameters, toolModelNames, toolModels, weatherParameters } from "../support/tools.ts";

noteSharedModels("tests/tools/ollamaTools.test.ts");

let server: TestServer;
let ollama: Ollama;
beforeAll(async () => {
  server = await startTestServer(toolModels);
  ollama = new Ollama({ host: server.url });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const tools: Tool[] = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the weather in a city",
      parameters: weatherParameters as Tool["function"]["parameters"],
    },
  },
  {
    type: "function",
    function: {
      name: "get_time",
      description: "Get the time in a time zone",
      parameters: timeParameters as Tool["function"]["parameters"],
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const options = { temperature: 0, num_predict: 80 };
const valid = (call: { function: { name: string; arguments: unknown } }) =>
  call.function.name === "get_weather" ? isWeatherArguments(call.function.arguments) : isTimeArguments(call.function.arguments);

test("a call comes back in message.tool_calls with its arguments as an object", async () => {
  const response = await ollama.chat({ model: "tools", messages, tools, stream: false, options });
  expect(response.done).toBe(true);
  expect(response.done_reason).toBe("stop");
  expect(response.message.role).toBe("assistant");
  expect(response.message.content).toBe("");
  const [call] = response.message.tool_calls!;
  expect(typeof call!.function.arguments).toBe("object");
  expect(valid(call!)).toBe(true);
  expect(response.eval_count).toBeGreaterThan(3);
});

test("streamed: the call arrives whole in one line, before the final line", async () => {
  const whole = await ollama.chat({ model: "tools", messages, tools, stream: false, options });
  const parts = [];
  for await (const part of await ollama.chat({ model: "tools", messages, tools, stream: true, options })) parts.push(part);
  const withCalls = parts.filter((p) => p.message.tool_calls?.length);
  expect(withCalls).toHaveLength(1);
  expect(withCalls[0]!.done).toBe(false);
  expect(withCalls[0]!.message.tool_calls!.map((c) => c.function)).toEqual(whole.message.tool_calls!.map((c) => c.function));
  expect(parts.at(-1)!.done).toBe(true);
  expect(parts.at(-1)!.message.tool_calls).toBeUndefined();
});

test("call -> tool result (tool_name, no id) -> a text answer", async () => {
  const first = await ollama.chat({ model: "tools", messages, tools, stream: false, options });
  const [call] = first.message.tool_calls!;
  const answer = await ollama.chat({
    model: "tools",
    messages: [...messages, first.message, { role: "tool", content: JSON.stringify({ temperature: 21 }), tool_name: call!.function.name }],
    tools,
    stream: false,
    options: { ...options, num_predict: 10 },
  });
  expect(answer.message.tool_calls).toBeUndefined();
  expect(answer.message.content).toBe("done.");
  expect(answer.done_reason).toBe("stop");
});

test.skipIf(!toolModelNames.includes("stories"))("a model that does not call answers in text", async () => {
  const response = await ollama.chat({ model: "stories", messages, tools, stream: false, options: { ...options, num_predict: 8 } });
  expect(response.message.tool_calls).toBeUndefined();
  expect(response.message.content.length).toBeGreaterThan(0);
});

test("raw NDJSON: the call line and the closing line, exactly", async () => {
  const response = await postJson(`${server.url}/api/chat`, { model: "tools", messages, tools, options });
  expect(response.headers.get("content-type")).toBe("application/x-ndjson");
  const lines = (await readChunks(response)).text
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line));
  expect(lines).toHaveLength(2);
  const [callLine, last] = lines;
  expect(Object.keys(callLine)).toEqual(["model", "created_at", "message", "done"]);
  expect(callLine.message).toEqual({
    role: "assistant",
    content: "",
    tool_calls: [
      {
        id: callLine.message.tool_calls[0].id,
        function: {
          index: 0,
          name: callLine.message.tool_calls[0].function.name,
          arguments: callLine.message.tool_calls[0].function.arguments,
        },
      },
    ],
  });
  expect(valid(callLine.message.tool_calls[0])).toBe(true);
  expect(last).toMatchObject({ model: "tools", message: { role: "assistant", content: "" }, done: true, done_reason: "stop" });
});

test("a tool schema that cannot become a grammar is a 400 in Ollama's format, naming the field", async () => {
  const bad = [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { a: { allOf: [{}, {}] } } } } }];
  const response = await postJson(`${server.url}/api/chat`, { model: "tools", messages, tools: bad, stream: false });
  expect(response.status).toBe(400);
  const body = await bodyOf(response);
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error).toStartWith("tools[0].function.parameters.properties.a.allOf:");
});
