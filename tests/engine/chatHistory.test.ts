/** Neutral messages -> node-llama-cpp chat history: one model turn per assistant turn, results attached to their calls, clear errors. */
import { describe, expect, test } from "bun:test";
import { toChatHistory } from "../../src/engine/chatHistory.ts";
import type { ChatMessage } from "../../src/engine/types.ts";

const weather = (id: string, city = "Paris") => ({ id, name: "get_weather", arguments: { city } });

describe("toChatHistory", () => {
  test("plain turns map one to one; a trailing assistant message stays a model turn (a prefill)", () => {
    expect(
      toChatHistory([
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
      ]),
    ).toEqual([
      { type: "system", text: "Be brief." },
      { type: "user", text: "Hi" },
      { type: "model", response: ["Hello"] },
    ]);
  });

  test("calls, their results (by id, JSON parsed) and the answer after them are one model turn", () => {
    const history = toChatHistory([
      { role: "user", content: "Weather in Paris and Rome?" },
      { role: "assistant", content: "Checking.", toolCalls: [weather("a"), weather("b", "Rome")] },
      { role: "tool", content: '{"temp": 9}', toolCallId: "b" },
      { role: "tool", content: "sunny", toolCallId: "a" },
      { role: "assistant", content: "Sunny in Paris, 9 degrees in Rome." },
      { role: "user", content: "Thanks" },
    ]);
    expect(history).toEqual([
      { type: "user", text: "Weather in Paris and Rome?" },
      {
        type: "model",
        response: [
          "Checking.",
          { type: "functionCall", name: "get_weather", params: { city: "Paris" }, result: "sunny", startsNewChunk: true },
          { type: "functionCall", name: "get_weather", params: { city: "Rome" }, result: { temp: 9 }, startsNewChunk: false },
          "Sunny in Paris, 9 degrees in Rome.",
        ],
      },
      { type: "user", text: "Thanks" },
    ]);
  });

  test("results without ids (Ollama) answer the earliest open call of their tool, else the earliest", () => {
    const history = toChatHistory([
      { role: "user", content: "?" },
      { role: "assistant", content: "", toolCalls: [weather("a"), { id: "b", name: "get_time", arguments: {} }, weather("c", "Rome")] },
      { role: "tool", content: "noon", toolName: "get_time" },
      { role: "tool", content: "first" },
      { role: "tool", content: "second", toolName: "get_weather" },
    ]);
    const calls = (history[1] as { response: { result?: unknown }[] }).response.map((item) => item.result);
    expect(calls).toEqual(["first", "noon", "second"]);
  });

  test.each([
    [
      [
        { role: "user", content: "?" },
        { role: "tool", content: "x", toolCallId: "a" },
      ],
      'the tool result for "a" answers no earlier tool call',
    ],
    [
      [
        { role: "user", content: "?" },
        { role: "tool", content: "x" },
      ],
      "a tool result answers no earlier tool call",
    ],
    [
      [
        { role: "user", content: "?" },
        { role: "assistant", content: "", toolCalls: [weather("a")] },
        { role: "user", content: "and?" },
      ],
      'tool call "a" (get_weather) has no tool result',
    ],
    [
      [
        { role: "user", content: "?" },
        { role: "assistant", content: "", toolCalls: [weather("a")] },
      ],
      "has no tool result",
    ],
    [[{ role: "assistant", content: "", toolCalls: [weather("a"), weather("a")] }], 'id "a" is used twice'],
    [[], "messages must not be empty"],
  ] as [ChatMessage[], string][])("%j is a 400 on messages", (messages, message) => {
    let error: { code?: string; param?: string; message?: string } = {};
    try {
      toChatHistory(messages);
    } catch (caught) {
      error = caught as typeof error;
    }
    expect(error.code).toBe("invalid_request");
    expect(error.param).toBe("messages");
    expect(error.message).toContain(message);
  });
});
