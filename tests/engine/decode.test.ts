/**
 * The engine's decode loop through the real engine of a running server: text continues after the prompt with its
 * leading space, end-of-generation biases and `ignoreEos` work, seeds differ per request, penalties count the prompt,
 * the context bounds max tokens, template stops, grammars, log probabilities, token biases, fill in the middle, several
 * choices, prompt reuse and token-id prompts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { CompletionRequest, GeneratedToken, GenerationStart } from "../../src/engine/types.ts";
import { hasSharedModels, noteSharedModels, startTestServer, storiesModel, type TestServer } from "../support/testServer.ts";

noteSharedModels("tests/engine/decode.test.ts");

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", context: 256, parallel: 2 },
    general: { source: "synthetic:demo", context: 256, parallel: 1, chat_template: "general" },
    fim: { source: "synthetic:tiny-fim", context: 256, parallel: 1 },
    bpe: { source: "synthetic:tiny-bpe", context: 256, parallel: 1 },
    ...(hasSharedModels ? { stories: { source: storiesModel, context: 256, parallel: 1 } } : {}),
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const complete = (request: Partial<CompletionRequest>) =>
  server.engine.complete({ model: "demo", prompt: "Once upon a", raw: true, maxTokens: 8, temperature: 0, ...request }).collect();

/** The start event (prompt size, cached tokens) of a completion, then the rest collected. */
async function startOf(request: Partial<CompletionRequest>): Promise<GenerationStart> {
  const generation = server.engine.complete({ model: "demo", prompt: "x", raw: true, maxTokens: 1, temperature: 0, ...request });
  let start: GenerationStart | undefined;
  for await (const event of generation) if (event.type === "start") start = event;
  return start!;
}

const errorOf = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: { param?: string; message: string }) => error,
  );

describe("text", () => {
  test.if(hasSharedModels)("a raw completion continues the prompt with the first token's leading space (stories260K)", async () => {
    const { text } = await complete({ model: "stories", prompt: "Once upon a", maxTokens: 6 });
    expect(text).toStartWith(" time,");
  });

  test.each(["demo", "bpe"])("the text is the tokens' own pieces, the first with its leading space (%s)", async (model) => {
    const { text, tokens } = await complete({ model, reportTokens: true, maxTokens: 12 });
    expect(tokens).toHaveLength(12);
    expect(tokens![0]!.text).toStartWith(" ");
    expect(text).toStartWith(tokens![0]!.text);
    expect(text).toBe(tokens!.map((t) => t.text).join(""));
  });
});

describe("end of generation", () => {
  test("a bias on the end-of-sequence token works, and ignoreEos bans it even then", async () => {
    const forced = await complete({ tokenBias: [{ token: 2, bias: 100 }] });
    expect(forced.summary).toMatchObject({ finishReason: "stop", completionTokens: 0 });
    expect(forced.text).toBe("");
    const ignored = await complete({ tokenBias: [{ token: 2, bias: 100 }], ignoreEos: true, maxTokens: 5 });
    expect(ignored.summary).toMatchObject({ finishReason: "length", completionTokens: 5 });
  });

  test("max tokens are bounded by the context: finish reason length when it is full", async () => {
    const { summary } = await complete({ maxTokens: 100_000, ignoreEos: true });
    expect(summary.finishReason).toBe("length");
    expect(summary.promptTokens + summary.completionTokens).toBe(256);
  });

  test("a plain-text stop of the chat template ends generation and is not reported as a stop sequence", async () => {
    const grammar = 'root ::= "hello" "\\n\\n### Human: more"';
    const chat = await server.engine
      .chat({ model: "general", messages: [{ role: "user", content: "hi" }], grammar, maxTokens: 40, temperature: 0 })
      .collect();
    expect(chat.text).toBe("hello");
    expect(chat.summary.finishReason).toBe("stop");
    expect(chat.summary.stopSequence).toBeUndefined();
    // A raw completion has no template, so the same text goes through.
    const raw = await complete({ model: "general", grammar, maxTokens: 40 });
    expect(raw.text).toBe("hello\n\n### Human: more");
    // A client stop string is reported.
    const stopped = await complete({ model: "general", grammar, maxTokens: 40, stop: ["Human"] });
    expect(stopped.summary.stopSequence).toBe("Human");
    expect(stopped.text).toBe("hello\n\n### ");
  });
});

describe("sampling", () => {
  test("requests without a seed get different seeds (node-llama-cpp's default changes once a second)", async () => {
    const request = { prompt: "the", maxTokens: 30, temperature: 1.5, topK: 0, topP: 1, minP: 0 };
    const [a, b] = await Promise.all([complete(request), complete(request)]);
    expect(a.text).not.toBe(b.text);
    const seeded = await complete({ ...request, seed: 42 });
    expect((await complete({ ...request, seed: 42 })).text).toBe(seeded.text);
  });

  test("penalties count the prompt's last tokens (repeatLastN, llama-server's window), not only generated ones", async () => {
    const first = async (request: Partial<CompletionRequest>) =>
      (await complete({ prompt: "a b c a b c", maxTokens: 1, logprobs: 5, ...request })).tokens![0]!.top;
    const plain = await first({});
    // At the first generated token only the prompt is in the window: a window of generated tokens would be empty.
    expect(await first({ presencePenalty: 1.5 })).not.toEqual(plain);
    expect(await first({ presencePenalty: 1.5, repeatLastN: 0 })).toEqual(plain);
  });

  test.if(hasSharedModels)("a repeat penalty over the prompt keeps stories260K from repeating it", async () => {
    const prompt = "Once upon a time, there was a little girl. Once upon a";
    expect((await complete({ model: "stories", prompt, maxTokens: 2 })).text).toStartWith(" time");
    expect((await complete({ model: "stories", prompt, maxTokens: 2, repeatPenalty: 2 })).text).not.toStartWith(" time");
  });

  test("token bias: a ban changes the greedy token, +100 on a text forces its token, ids outside the vocabulary are a 400", async () => {
    const greedy = (await complete({ maxTokens: 1, reportTokens: true })).tokens![0]!;
    const banned = (await complete({ maxTokens: 1, reportTokens: true, tokenBias: [{ token: greedy.id, bias: "never" }] })).tokens![0]!;
    expect(banned.id).not.toBe(greedy.id);
    const forced = await complete({ maxTokens: 3, tokenBias: [{ token: "zz", bias: 100 }], reportTokens: true });
    expect(new Set(forced.tokens!.map((t) => t.text)).size).toBe(1);
    const error = await errorOf(complete({ tokenBias: [{ token: 1_000_000, bias: 1 }] }));
    expect(error).toMatchObject({ param: "tokenBias" });
    expect(error!.message).toContain("0 to 999");
  });

  test("a GBNF grammar constrains the output; a broken one or one combined with format is a 400 naming grammar", async () => {
    const { text } = await complete({ grammar: 'root ::= ("yes" | "no") "!"', maxTokens: 10 });
    expect(["yes!", "no!"]).toContain(text);
    expect(await errorOf(complete({ grammar: "root ::= undefined-rule" }))).toMatchObject({ param: "grammar" });
    expect(await errorOf(complete({ grammar: 'root ::= "a"', format: "json" }))).toMatchObject({ param: "grammar" });
  });
});

describe("log probabilities", () => {
  const isSortedDown = (values: number[]) => values.every((v, i) => i === 0 || v <= values[i - 1]!);

  test("each token has its log probability and the top alternatives; at temperature 0 the first alternative is the token", async () => {
    const { text, tokens } = await complete({ logprobs: 3, maxTokens: 10 });
    expect(tokens).toHaveLength(10);
    expect(tokens!.map((t) => t.text).join("")).toBe(text);
    for (const token of tokens!) {
      expect(token.top).toHaveLength(3);
      expect(token.top![0]!.id).toBe(token.id);
      expect(token.logprob).toBe(token.top![0]!.logprob);
      expect(token.logprob!).toBeLessThanOrEqual(0);
      expect(isSortedDown(token.top!.map((t) => t.logprob))).toBe(true);
      expect(new TextDecoder().decode(new Uint8Array(token.bytes))).toBe(token.text);
    }
    expect((await complete({ logprobs: 0, maxTokens: 2 })).tokens![0]!.top).toEqual([]);
  });

  test("probabilities do not change what is generated", async () => {
    const request = { maxTokens: 20, temperature: 0.9, seed: 7 };
    expect((await complete({ ...request, logprobs: 5 })).text).toBe((await complete(request)).text);
  });

  test("a character spelled in byte tokens is reported with its bytes, its text arrives with the last byte", async () => {
    // Force the UTF-8 bytes of "é" (0xC3 0xA9), byte tokens <0xC3> = 3 + 0xC3 and <0xA9> = 3 + 0xA9 in the writer's vocabulary.
    const grammar = 'root ::= "é"';
    const events: { text: string; tokens?: GeneratedToken[] }[] = [];
    for await (const event of server.engine.complete({
      model: "demo",
      prompt: "x",
      raw: true,
      grammar,
      maxTokens: 5,
      temperature: 0,
      logprobs: 1,
    }))
      if (event.type === "text") events.push(event);
    const tokens = events.flatMap((e) => e.tokens ?? []);
    expect(tokens.map((t) => t.bytes)).toEqual([[0xc3], [0xa9]]);
    expect(tokens.map((t) => t.text)).toEqual(["", ""]);
    expect(events.map((e) => e.text).join("")).toBe("é");
    expect(events.find((e) => e.text === "é")!.tokens).toHaveLength(2);
  });
});

describe("prompts", () => {
  test("token ids go to the model as they are; a text first gets the beginning-of-sequence token", async () => {
    expect((await startOf({ prompt: [5, 6, 7] })).promptTokens).toBe(3);
    const mixed = await startOf({ prompt: ["x", 5] });
    expect(mixed.promptTokens).toBe((await startOf({ prompt: "x" })).promptTokens + 1);
    expect(await errorOf(startOf({ prompt: [5, 99999] }))).toMatchObject({ param: "prompt" });
    expect(await errorOf(startOf({ prompt: [5], raw: false }))).toMatchObject({ param: "prompt" });
  });

  test("reusePrompt false evaluates the whole prompt again", async () => {
    const prompt = "the same long prompt for the cache";
    await startOf({ prompt });
    expect((await startOf({ prompt })).cachedTokens).toBeGreaterThan(3);
    expect((await startOf({ prompt, reusePrompt: false })).cachedTokens).toBe(0);
  });

  test("fill in the middle: [BOS] PRE prefix SUF suffix MID; a model without the tokens is a 400 naming suffix", async () => {
    const prefix = (await startOf({ model: "fim", prompt: "def add(a, b):" })).promptTokens - 1; // BOS + text
    const suffix = (await startOf({ model: "fim", prompt: "return c" })).promptTokens - 1;
    const start = await startOf({ model: "fim", prompt: "def add(a, b):", suffix: "return c" });
    expect(start.promptTokens).toBe(1 + 1 + prefix + 1 + suffix + 1);
    const { summary } = await complete({ model: "fim", prompt: "def add(a, b):", suffix: "return c", maxTokens: 4 });
    expect(summary.completionTokens).toBeGreaterThan(0);
    const error = await errorOf(startOf({ model: "demo", suffix: "x" }));
    expect(error).toMatchObject({ param: "suffix" });
    expect(error!.message).toContain("fill in the middle");
  });
});

describe("choices", () => {
  test("several answers run side by side with seeds seed, seed + 1; more than the model's parallel is a 400", async () => {
    const request = { model: "demo", prompt: "the", raw: true, maxTokens: 12, temperature: 1.2, seed: 5 };
    const [a, b] = await Promise.all(server.engine.completeChoices(request, 2).map((g) => g.collect()));
    expect(a!.text).not.toBe(b!.text);
    expect(b!.text).toBe((await server.engine.complete({ ...request, seed: 6 }).collect()).text);
    let error: unknown;
    try {
      server.engine.completeChoices(request, 3);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ param: "choices" });
    expect((error as Error).message).toContain("between 1 and 2");
  });
});
