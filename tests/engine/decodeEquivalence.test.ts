/**
 * The engine's decode loop samples exactly what node-llama-cpp's LlamaCompletion (which it replaced) samples, token
 * for token, where both mean the same thing: greedy, seeded sampling, a grammar and a token ban.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { LlamaGrammar, Token, TokenBias } from "node-llama-cpp";
import { decode } from "../../src/engine/decode.ts";
import type { LoadedModel } from "../../src/engine/LoadedModel.ts";
import { getLlamaRuntime, importNodeLlamaCpp, type NodeLlamaCppModule, nodeLlamaCppSpecifier } from "../../src/engine/nodeLlamaCpp.ts";
import { OffThreadTokenizer } from "../../src/engine/OffThreadTokenizer.ts";
import { renderRaw } from "../../src/engine/renderPrompt.ts";
import { resolveSampling } from "../../src/engine/sampling.ts";
import { tokenBiasFor } from "../../src/engine/tokenBias.ts";
import type { GeneratedToken, GenerateOptions } from "../../src/engine/types.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { hasSharedModels, noteSharedModels, storiesModel, testCacheDir } from "../support/testServer.ts";
import { loadOneModel } from "../support/loadOneModel.ts";

noteSharedModels("tests/engine/decodeEquivalence.test.ts");

let nlc: NodeLlamaCppModule;
const models = new Map<string, LoadedModel>();
/** A short prompt: tokenized in place, the worker never starts. */
const budget = { tokenizer: new OffThreadTokenizer(nodeLlamaCppSpecifier), limit: 200 };
beforeAll(async () => {
  nlc = await importNodeLlamaCpp();
  const paths = { demo: await ensureSyntheticModel("demo", testCacheDir), ...(hasSharedModels ? { stories: storiesModel } : {}) };
  for (const [name, path] of Object.entries(paths)) {
    models.set(name, await loadOneModel(path, { name }));
  }
});
afterAll(async () => {
  for (const loaded of models.values()) await loaded.dispose();
});

async function ownLoop(loaded: LoadedModel, options: Partial<GenerateOptions>, grammar?: LlamaGrammar): Promise<Token[]> {
  const { sequence, release } = await loaded.pool.acquire(undefined);
  try {
    await sequence.clearHistory();
    const sampling = resolveSampling({ model: loaded.entry.name, reportTokens: true, ...options }, {});
    const tokens: GeneratedToken[] = [];
    const sink = { start() {}, text: (_: string, t?: GeneratedToken[]) => tokens.push(...(t ?? [])), signal: new AbortController().signal };
    const prompt = await renderRaw(loaded, "Once upon a time", budget);
    const tokenBias = tokenBiasFor(nlc, loaded, sampling);
    await decode(nlc, loaded, sequence, {
      prompt,
      sampling,
      grammar,
      tokenBias,
      cachedTokens: 0,
      window: loaded.contextSize,
      signal: sink.signal,
      sink,
    });
    return tokens.map((t) => t.id as Token);
  } finally {
    release();
  }
}

async function llamaCompletion(loaded: LoadedModel, options: Partial<GenerateOptions>, grammar?: LlamaGrammar, tokenBias?: TokenBias) {
  const { sequence, release } = await loaded.pool.acquire(undefined);
  try {
    await sequence.clearHistory();
    const completion = new nlc.LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
    const tokens: Token[] = [];
    const prompt = (await renderRaw(loaded, "Once upon a time", budget)).tokens.slice(1); // LlamaCompletion adds BOS itself
    await completion.generateCompletionWithMeta(prompt, {
      maxTokens: options.maxTokens,
      temperature: options.temperature,
      topK: options.topK,
      topP: options.topP,
      minP: options.minP,
      seed: options.seed,
      repeatPenalty: false,
      grammar,
      tokenBias,
      onToken: (generated) => tokens.push(...generated),
    });
    completion.dispose({ disposeSequence: false });
    return tokens;
  } finally {
    release();
  }
}

const cases: [string, Partial<GenerateOptions>][] = [
  ["greedy", { maxTokens: 40, temperature: 0, topK: 40, topP: 0.95, minP: 0.05, seed: 1 }],
  ["seeded sampling", { maxTokens: 40, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 42 }],
  ["seeded, no truncation", { maxTokens: 40, temperature: 1.2, topK: 0, topP: 1, minP: 0, seed: 7 }],
];

test.each(hasSharedModels ? ["demo", "stories"] : ["demo"])("same tokens as LlamaCompletion on %s", async (name) => {
  const loaded = models.get(name)!;
  for (const [label, options] of cases) {
    const ours = await ownLoop(loaded, options);
    expect({ label, tokens: ours }).toEqual({ label, tokens: await llamaCompletion(loaded, options) });
    expect(ours.length).toBeGreaterThan(0);
  }
  // A ban on the greedy first token, through each one's own bias object.
  const greedy = cases[0]![1];
  const first = (await ownLoop(loaded, greedy))[0]!;
  const ban = { ...greedy, tokenBias: [{ token: first, bias: "never" as const }] };
  const theirs = new nlc.TokenBias(loaded.model.tokenizer).set(first, "never");
  const banned = await ownLoop(loaded, ban);
  expect(banned[0]).not.toBe(first);
  expect(banned).toEqual(await llamaCompletion(loaded, greedy, undefined, theirs));
  // A grammar.
  const llama = await getLlamaRuntime();
  const grammar = await llama.createGrammar({ grammar: 'root ::= (" big" | " small") (" dog" | " cat") "."' });
  expect(await ownLoop(loaded, { ...greedy, maxTokens: 10 }, grammar)).toEqual(
    await llamaCompletion(loaded, { ...greedy, maxTokens: 10 }, grammar),
  );
});
