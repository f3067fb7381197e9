/**
 * Call extraction on recorded outputs in each family's documented call syntax, through the code path `auto` uses
 * (decodeWithTools: LlamaChat with the family's chat wrapper). The recordings are replayed token by token on a model
 * with a real-size vocabulary: the writer's 32k model always, and llama-2's real tokenizer when ../shared is there.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as nlc from "node-llama-cpp";
import { decodeWithTools } from "../../src/engine/decodeWithTools.ts";
import { getLlamaRuntime } from "../../src/engine/nodeLlamaCpp.ts";
import type { Sampling } from "../../src/engine/sampling.ts";
import { planTools } from "../../src/engine/tools/toolPlan.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { replayBias } from "../support/replay.ts";
import { hasSharedModels, noteSharedModels, randomLlama2Model, testCacheDir } from "../support/testServer.ts";

noteSharedModels("tests/engine/toolCallExtraction.test.ts");

const tools = [
  {
    name: "get_weather",
    description: "Get the current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" }, unit: { enum: ["c", "f"] } }, required: ["city", "unit"] },
  },
  { name: "get_time", description: "Get the current time", parameters: { type: "object", properties: { tz: { type: "string" } } } },
];
type Call = { name: string; arguments: Record<string, unknown> };
const paris: Call = { name: "get_weather", arguments: { city: "Paris", unit: "c" } };
const tokyo: Call = { name: "get_time", arguments: { tz: "Asia/Tokyo" } };
const sampling: Sampling = {
  temperature: 0,
  topP: 1,
  topK: 40,
  minP: 0,
  seed: 1,
  stop: [],
  repeatLastN: 64,
  tokenBias: [],
  ignoreEos: false,
  reportTokens: false,
  reusePrompt: true,
  scorePrompt: false,
  reportContext: false,
};

/** [label, chat wrapper, recorded model output, expected text, expected calls, parallel calls allowed] */
const recordings: [string, () => nlc.ChatWrapper, string, string, Call[], boolean][] = [
  [
    "Qwen / Hermes <tool_call>, one call",
    () => new nlc.QwenChatWrapper(),
    `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>`,
    "",
    [paris],
    true,
  ],
  [
    "Qwen / Hermes, text then two parallel calls",
    () => new nlc.QwenChatWrapper(),
    `Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}\n</tool_call>`,
    "Let me check.\n",
    [paris, tokyo],
    true,
  ],
  [
    "Mistral [TOOL_CALLS], two calls",
    () => new nlc.MistralChatWrapper(),
    `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}, {"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}]`,
    "",
    [paris, tokyo],
    true,
  ],
  [
    "Llama 3.1 <function=…> (the syntax node-llama-cpp's Llama 3.1 wrapper instructs)",
    () => new nlc.Llama3_1ChatWrapper(),
    `<function=get_weather>{"city": "Paris", "unit": "c"}</function>`,
    "",
    [paris],
    true,
  ],
  [
    "Llama 3.1 / 3.2 JSON {name, parameters}",
    () => new nlc.Llama3_2LightweightChatWrapper(),
    `{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}`,
    "",
    [paris],
    true,
  ],
  [
    "Mistral, two calls recorded, parallel calls off: only the first",
    () => new nlc.MistralChatWrapper(),
    `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}, {"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}]`,
    "",
    [paris],
    false,
  ],
  [
    "a plain answer is text, not a call (Qwen)",
    () => new nlc.QwenChatWrapper(),
    "It is sunny in Paris.",
    "It is sunny in Paris.",
    [],
    true,
  ],
];

const models: [string, () => Promise<string>][] = [
  ["the writer's 32k vocabulary", () => ensureSyntheticModel("tiny-32k", testCacheDir)],
  ...(hasSharedModels ? [["llama-2's tokenizer", async () => randomLlama2Model] as [string, () => Promise<string>]] : []),
];

describe.each(models)("recorded calls replayed on %s", (_label, modelPath) => {
  let model: nlc.LlamaModel;
  let context: nlc.LlamaContext;
  beforeAll(async () => {
    const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
    model = await llama.loadModel({ modelPath: await modelPath() });
    context = await model.createContext({ contextSize: 2048, sequences: 1, threads: 1 });
  });
  afterAll(async () => {
    await context?.dispose();
    await model?.dispose();
  });

  test.each(recordings)("%s", async (_name, wrapper, recorded, text, calls, parallel) => {
    const chatWrapper = wrapper();
    const plan = planTools({ tools, toolChoice: "auto", parallelToolCalls: parallel })!;
    const history: nlc.ChatHistoryItem[] = [{ type: "user", text: "Weather in Paris, and the time in Tokyo?" }];
    const sequence = context.getSequence();
    const replay = replayBias(model, sequence, chatWrapper, history, plan.functions, recorded);
    const events: string[] = [];
    const ended: unknown[] = [];
    try {
      const result = await decodeWithTools(nlc, {
        sequence,
        chatWrapper,
        history,
        plan,
        sampling,
        maxTokens: 200,
        window: 2048,
        tokenBias: replay.tokenBias,
        signal: new AbortController().signal,
        sink: {
          text: (piece) => events.push(`text ${piece}`),
          toolCallStart: (index, id, name) => events.push(`start ${index} ${name} ${id.startsWith("call_")}`),
          toolCallArguments: () => {},
          toolCallEnd: (index, call, json) => {
            events.push(`end ${index}`);
            ended.push({ name: call.name, arguments: call.arguments });
            expect(JSON.parse(json)).toEqual(call.arguments);
          },
        },
      });
      expect(ended).toEqual(calls);
      expect(result.finishReason).toBe(calls.length > 0 ? "toolCalls" : "stop");
      expect(
        events
          .filter((e) => e.startsWith("text "))
          .map((e) => e.slice(5))
          .join(""),
      ).toBe(text);
      // Text first, then each call's start before its end.
      expect(events.filter((e) => !e.startsWith("text "))).toEqual(
        calls.flatMap((call, i) => [`start ${i} ${call.name} true`, `end ${i}`]),
      );
      expect(result.completionTokens).toBeGreaterThan(0);
    } finally {
      replay.restore();
      sequence.dispose();
    }
  });
});
