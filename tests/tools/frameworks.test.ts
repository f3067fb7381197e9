/**
 * Agent frameworks, unchanged, running a tool loop (call -> run the tool -> answer) against the real server: Vercel's
 * AI SDK through its OpenAI-compatible, Ollama and Anthropic providers, and the OpenAI Agents SDK (Responses API and
 * chat completions). The writer's tiny-tools model calls by itself; the stories model is forced on its first step.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { Agent, OpenAIChatCompletionsModel, run, setDefaultOpenAIClient, setTracingDisabled, tool as agentTool } from "@openai/agents";
import { generateText, type LanguageModel, stepCountIs, streamText, tool } from "ai";
import { createOllama } from "ollama-ai-provider-v2";
import OpenAI from "openai";
import { z } from "zod";
import { hasSharedModels, noteSharedModels, startTestServer, storiesModel, type TestServer } from "../support/testServer.ts";

noteSharedModels("tests/tools/frameworks.test.ts");

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    // Answers " done." after a tool result, and stops.
    tools: { source: "synthetic:tiny-tools", context: 2048, parallel: 2 },
    // The Agents SDK treats a reply cut at max tokens as a failure: stories ends its answers at a full stop here.
    ...(hasSharedModels ? { "stories-agent": { source: storiesModel, context: 2048, parallel: 2, defaults: { stop: ["."] } } } : {}),
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

/** A weather tool that records the cities it was asked about. */
function weatherTool() {
  const cities: string[] = [];
  const weather = tool({
    description: "Get the weather in a city",
    inputSchema: z.object({ city: z.enum(["Paris", "Rome", "Tokyo"]) }),
    execute: async ({ city }) => {
      cities.push(city);
      return { city, temperature: 21 };
    },
  });
  return { cities, weather };
}

describe("Vercel AI SDK", () => {
  const providers: [string, () => LanguageModel][] = [
    ["openai-compatible", () => createOpenAICompatible({ name: "llamaport", baseURL: `${server.url}/v1` })("tools")],
    ["ollama", () => createOllama({ baseURL: `${server.url}/api` })("tools")],
    ["anthropic", () => createAnthropic({ baseURL: `${server.url}/v1`, apiKey: "x" })("tools")],
  ];

  test.each(providers)("generateText with the %s provider: the model calls, the tool runs, the model answers", async (_name, model) => {
    const { cities, weather } = weatherTool();
    const result = await generateText({
      model: model(),
      tools: { get_weather: weather },
      prompt: "What is the weather in Paris?",
      temperature: 0,
      maxOutputTokens: 60,
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    expect(cities).toHaveLength(1);
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0]!.finishReason).toBe("tool-calls");
    expect(result.steps[0]!.toolResults[0]!.output).toEqual({ city: cities[0], temperature: 21 });
    expect(result.steps[1]!.toolCalls).toEqual([]);
    expect(result.steps[1]!.finishReason).toBe("stop");
    expect(result.text).toBe("done.");
  });

  test("streamText over chat completions streams the call's input and then the answer", async () => {
    const { cities, weather } = weatherTool();
    const result = streamText({
      model: providers[0]![1](),
      tools: { get_weather: weather },
      prompt: "What is the weather in Paris?",
      temperature: 0,
      maxOutputTokens: 60,
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    const parts: string[] = [];
    for await (const part of result.fullStream) parts.push(part.type);
    expect(cities).toHaveLength(1);
    expect(parts).toContain("tool-input-delta");
    expect(parts.indexOf("tool-result")).toBeLessThan(parts.lastIndexOf("text-delta"));
    expect((await result.text).length).toBeGreaterThan(0);
  });

  test.skipIf(!hasSharedModels)("a model that would not call is forced on its first step only", async () => {
    const { cities, weather } = weatherTool();
    const result = await generateText({
      model:
        providers[0]![1]().constructor === Object
          ? providers[0]![1]()
          : createOpenAICompatible({ name: "l", baseURL: `${server.url}/v1` })("stories-agent"),
      tools: { get_weather: weather },
      prompt: "What is the weather in Paris?",
      temperature: 0,
      maxOutputTokens: 60,
      stopWhen: stepCountIs(3),
      prepareStep: ({ stepNumber }) => (stepNumber === 0 ? { toolChoice: "required" } : {}),
      maxRetries: 0,
    });
    expect(cities).toHaveLength(1);
    expect(result.steps.map((s) => s.finishReason)).toEqual(["tool-calls", "stop"]);
  });
});

describe("OpenAI Agents SDK", () => {
  beforeAll(() => {
    setTracingDisabled(true);
    setDefaultOpenAIClient(new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "x", maxRetries: 0 }));
  });

  function weatherAgent(model: string | OpenAIChatCompletionsModel, toolChoice?: "required") {
    const cities: string[] = [];
    const getWeather = agentTool({
      name: "get_weather",
      description: "Get the weather in a city",
      parameters: z.object({ city: z.enum(["Paris", "Rome", "Tokyo"]) }),
      execute: async ({ city }) => {
        cities.push(city);
        return `sunny in ${city}`;
      },
    });
    const agent = new Agent({
      name: "weather",
      instructions: "Answer with the weather.",
      model,
      tools: [getWeather],
      // The SDK resets a forced tool choice after the first call, so the loop ends with an answer.
      modelSettings: { temperature: 0, maxTokens: 100, ...(toolChoice ? { toolChoice } : {}) },
    });
    return { agent, cities };
  }

  test("run() over the Responses API: the model calls, the tool runs, the final output is text", async () => {
    const { agent, cities } = weatherAgent("tools");
    const result = await run(agent, "What is the weather in Paris?");
    expect(cities).toHaveLength(1);
    expect(result.finalOutput).toBe("done.");
    expect(result.newItems.map((item) => item.type)).toEqual(["tool_call_item", "tool_call_output_item", "message_output_item"]);
  });

  test("run() streamed over the Responses API", async () => {
    const { agent, cities } = weatherAgent("tools");
    const result = await run(agent, "What is the weather in Paris?", { stream: true });
    const kinds: string[] = [];
    for await (const event of result) if (event.type === "run_item_stream_event") kinds.push(event.name);
    await result.completed;
    expect(cities).toHaveLength(1);
    expect(kinds).toEqual(["tool_called", "tool_output", "message_output_created"]);
  });

  test("run() over chat completions", async () => {
    const model = new OpenAIChatCompletionsModel(new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "x", maxRetries: 0 }), "tools");
    const { agent, cities } = weatherAgent(model);
    const result = await run(agent, "What is the weather in Rome?");
    expect(cities).toHaveLength(1);
    expect(typeof result.finalOutput).toBe("string");
  });

  test.skipIf(!hasSharedModels)("a model that would not call, forced (required) on its first turn", async () => {
    const { agent, cities } = weatherAgent("stories-agent", "required");
    const result = await run(agent, "What is the weather in Paris?");
    expect(cities).toHaveLength(1);
    expect(typeof result.finalOutput).toBe("string");
  });
});
