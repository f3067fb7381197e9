/**
 * Each protocol's stream of a turn with text and two calls. The tiny test models never make two calls over HTTP, so
 * this feeds the plugins' handlers a stand-in generation (the engine's own StreamingGeneration with a scripted
 * producer); the real-engine paths are in the other files of this folder.
 */
import { describe, expect, test } from "bun:test";
import anthropic from "../../plugins/anthropic.ts";
import ollama from "../../plugins/ollama.ts";
import openai from "../../plugins/openai.ts";
import responses from "../../plugins/responses.ts";
import { StreamingGeneration } from "../../src/engine/StreamingGeneration.ts";
import type { EngineFacade, GenerationSummary, ToolCall } from "../../src/engine/types.ts";
import type { PluginDefinition, RouteDefinition } from "../../src/pluginApi/definePlugin.ts";
import { SseMessage, StreamBody } from "../../src/pluginApi/streams.ts";

const calls: ToolCall[] = [
  { id: "call_a", name: "get_weather", arguments: { city: "Paris" } },
  { id: "call_b", name: "get_time", arguments: { tz: "UTC" } },
];

/**
 * An engine whose chat() generates "Checking." and then the two calls, their arguments in two pieces each (pieces a
 * busy reader has not taken yet arrive joined, so the assertions join consecutive pieces).
 */
const engine = {
  chat: () =>
    new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 10, cachedTokens: 0 });
      sink.text("Checking.");
      for (const [index, call] of calls.entries()) {
        const json = JSON.stringify(call.arguments);
        sink.toolCallStart(index, call.id, call.name);
        sink.toolCallArguments(index, json.slice(0, 4));
        sink.toolCallArguments(index, json.slice(4));
        sink.toolCallEnd(index, call, json);
      }
      return {
        type: "done",
        model: "m",
        finishReason: "toolCalls",
        promptTokens: 10,
        cachedTokens: 0,
        completionTokens: 20,
        sequence: 0,
        timings: { queueMs: 0, loadMs: 0, promptMs: 0, generateMs: 0, totalMs: 0 },
      } satisfies GenerationSummary;
    }),
  findModel: async () => ({ name: "m" }),
} as unknown as EngineFacade;

/** Runs a plugin route's handler and reads its stream as [event, data] pairs (data parsed from JSON). */
async function stream(plugin: PluginDefinition, path: string, body: object): Promise<[string | undefined, any][]> {
  const route = plugin.routes.find((r): r is RouteDefinition => r.path === path && "handler" in r)!;
  const signal = new AbortController().signal;
  const log = { info() {}, warn() {}, error() {} };
  const result = await route.handler({
    body,
    engine,
    signal,
    params: {},
    query: {},
    headers: new Headers(),
    log,
    request: new Request("http://x"),
    server: { version: "test", buildInfo: "b0-test" },
  });
  if (!(result instanceof StreamBody)) throw new Error("expected a stream");
  const items: [string | undefined, any][] = [];
  for await (const item of result.source) {
    const [event, data] = item instanceof SseMessage ? [item.event, item.data] : [undefined, item];
    items.push([event, typeof data === "string" && data !== "[DONE]" ? JSON.parse(data) : data]);
  }
  return items;
}

const question = [{ role: "user", content: "Weather and time?" }];

describe("a turn with text and two calls", () => {
  test("OpenAI: text, then each call's head (index, id, name) and argument pieces under its own index", async () => {
    const items = await stream(openai, "/v1/chat/completions", { model: "m", messages: question, stream: true, tools: [] });
    const deltas = items.slice(0, -1).map(([, data]) => data.choices[0]);
    const compact: unknown[] = [];
    for (const { delta } of deltas) {
      const piece = delta.tool_calls?.[0];
      const last = compact.at(-1) as { args?: string; index?: number } | undefined;
      if (piece && !piece.id && last?.args !== undefined && last.index === piece.index) last.args += piece.function.arguments;
      else if (piece && !piece.id) compact.push({ index: piece.index, args: piece.function.arguments });
      else compact.push(delta);
    }
    expect(compact).toEqual([
      { role: "assistant", content: "" },
      { content: "Checking." },
      { tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }] },
      { index: 0, args: '{"city":"Paris"}' },
      { tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "get_time", arguments: "" } }] },
      { index: 1, args: '{"tz":"UTC"}' },
      {},
    ]);
    expect(deltas.at(-1).finish_reason).toBe("tool_calls");
  });

  test("Anthropic: a text block, then one tool_use block per call, each closed before the next opens", async () => {
    const items = await stream(anthropic, "/v1/messages", { model: "m", messages: question, max_tokens: 50, stream: true });
    const blocks = items
      .filter(([event]) => event?.startsWith("content_block"))
      .map(([event, data]) =>
        event === "content_block_delta"
          ? `${data.index} delta ${data.delta.type}`
          : `${data.index} ${event!.slice(14)} ${data.content_block?.type ?? ""}`.trim(),
      );
    expect(blocks.filter((b, i) => b !== blocks[i - 1])).toEqual([
      "0 start text",
      "0 delta text_delta",
      "0 stop",
      "1 start tool_use",
      "1 delta input_json_delta",
      "1 stop",
      "2 start tool_use",
      "2 delta input_json_delta",
      "2 stop",
    ]);
    expect(items.find(([event]) => event === "message_delta")![1].delta.stop_reason).toBe("tool_use");
  });

  test("Responses: the message is output 0, the calls outputs 1 and 2, all in the completed response", async () => {
    const items = await stream(responses, "/v1/responses", { model: "m", input: "Weather and time?", stream: true });
    const added = items.filter(([event]) => event === "response.output_item.added").map(([, data]) => [data.output_index, data.item.type]);
    expect(added).toEqual([
      [0, "message"],
      [1, "function_call"],
      [2, "function_call"],
    ]);
    const deltas = items.filter(([event]) => event === "response.function_call_arguments.delta").map(([, data]) => data.output_index);
    expect(deltas.filter((d, i) => d !== deltas[i - 1])).toEqual([1, 2]);
    expect(items.map(([, data]) => data.sequence_number)).toEqual(items.map((_, i) => i));
    const completed = items.at(-1)![1].response;
    expect(completed.output.map((item: { type: string; arguments?: string }) => item.arguments ?? item.type)).toEqual([
      "message",
      '{"city":"Paris"}',
      '{"tz":"UTC"}',
    ]);
  });

  test("Ollama: the text line, then one line per call with its index, then the last line", async () => {
    const items = await stream(ollama, "/api/chat", { model: "m", messages: question });
    const messages = items.map(([, line]) => (typeof line === "string" ? JSON.parse(line) : line).message);
    expect(messages).toEqual([
      { role: "assistant", content: "Checking." },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_a", function: { index: 0, name: "get_weather", arguments: { city: "Paris" } } }],
      },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_b", function: { index: 1, name: "get_time", arguments: { tz: "UTC" } } }],
      },
      { role: "assistant", content: "" },
    ]);
  });
});
