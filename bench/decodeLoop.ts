/**
 * Per-token cost of llamaport's decode loop (src/engine/decode.ts) against node-llama-cpp's LlamaCompletion (what the
 * engine used before), and of reporting log probabilities (top 5) or tokens against plain text. One sequence,
 * temperature 0, end-of-sequence banned, same model, context and thread; the variants alternate within each round.
 * Usage: bun bench/decodeLoop.ts [model.gguf | synthetic preset] [tokens=512] [rounds=7]
 * Run it on a quiet machine: the numbers are differences of a few microseconds per token.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Token } from "node-llama-cpp";
import { defaultCacheDir } from "../src/config/environment.ts";
import { decode } from "../src/engine/decode.ts";
import { importNodeLlamaCpp, nodeLlamaCppSpecifier } from "../src/engine/nodeLlamaCpp.ts";
import { OffThreadTokenizer } from "../src/engine/OffThreadTokenizer.ts";
import { renderRaw } from "../src/engine/renderPrompt.ts";
import { resolveSampling } from "../src/engine/sampling.ts";
import type { GenerationSink } from "../src/engine/StreamingGeneration.ts";
import { tokenBiasFor } from "../src/engine/tokenBias.ts";
import type { GenerateOptions } from "../src/engine/types.ts";
import { ensureSyntheticModel, syntheticPresets } from "../src/gguf/syntheticModels.ts";
import { loadOneModel } from "../tests/support/loadOneModel.ts";

const stories = resolve(import.meta.dir, "../../shared/models/stories260K.gguf");
const argument = process.argv[2] || (existsSync(stories) ? stories : "demo");
const modelPath = argument in syntheticPresets ? await ensureSyntheticModel(argument, defaultCacheDir(process.env)) : argument;
const tokens = Number(process.argv[3] ?? 512);
const rounds = Number(process.argv[4] ?? 7);

const nlc = await importNodeLlamaCpp();
const loaded = await loadOneModel(modelPath, { name: "bench", context: tokens + 64 });
const { sequence } = await loaded.pool.acquire(undefined);
const prompt = await renderRaw(loaded, "Once upon a time", {
  tokenizer: new OffThreadTokenizer(nodeLlamaCppSpecifier),
  limit: loaded.contextSize,
});
const sink: GenerationSink = { start() {}, text() {}, signal: new AbortController().signal };

/** The engine's loop, as a request with these options runs it; ms per token. */
async function ownLoop(options: Partial<GenerateOptions>): Promise<number> {
  const sampling = resolveSampling({ model: "bench", maxTokens: tokens, temperature: 0, ignoreEos: true, ...options }, {});
  const tokenBias = tokenBiasFor(nlc, loaded, sampling);
  const started = performance.now();
  const result = await decode(nlc, loaded, sequence, {
    prompt,
    sampling,
    tokenBias,
    cachedTokens: 0,
    window: loaded.contextSize,
    signal: sink.signal,
    sink,
  });
  if (result.completionTokens !== tokens) throw new Error(`generated ${result.completionTokens} tokens`);
  return (performance.now() - started) / tokens;
}

/** What src/engine/decode.ts did before: LlamaCompletion with text chunks to a sink; ms per token. */
async function llamaCompletion(): Promise<number> {
  await sequence.clearHistory();
  const noEos = new nlc.TokenBias(loaded.model.tokenizer);
  (noEos as unknown as { _biases: Map<Token, number> })._biases.set(loaded.model.tokens.eos!, Number.NEGATIVE_INFINITY);
  const completion = new nlc.LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let count = 0;
  const started = performance.now();
  await completion.generateCompletionWithMeta(prompt.tokens.slice(1), {
    maxTokens: tokens,
    temperature: 0,
    topK: 40,
    topP: 0.95,
    minP: 0.05,
    seed: 1,
    repeatPenalty: false,
    tokenBias: noEos,
    onTextChunk: (text) => sink.text(text),
    onToken: (generated) => {
      count += generated.length;
    },
  });
  const ms = (performance.now() - started) / tokens;
  completion.dispose({ disposeSequence: false });
  if (count !== tokens) throw new Error(`LlamaCompletion generated ${count} tokens`);
  return ms;
}

const variants: [string, () => Promise<number>][] = [
  ["LlamaCompletion (before)", llamaCompletion],
  ["own loop, text only", () => ownLoop({})],
  ["own loop, tokens reported", () => ownLoop({ reportTokens: true })],
  ["own loop, logprobs top 5", () => ownLoop({ logprobs: 5 })],
];
const samples = new Map<string, number[]>(variants.map(([name]) => [name, []]));
for (const [, run] of variants) await run(); // warm-up
for (let round = 0; round < rounds; round++) for (const [name, run] of variants) samples.get(name)!.push(await run());

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(samples.get("LlamaCompletion (before)")!);
const text = median(samples.get("own loop, text only")!);
console.log(`model ${modelPath} (vocabulary ${loaded.vocabularySize}), ${tokens} tokens per run, 1 thread, ${rounds} rounds, medians`);
for (const [name] of variants) {
  const ms = median(samples.get(name)!);
  const vsBefore = ((ms - base) * 1000).toFixed(1);
  const vsText = ((ms - text) * 1000).toFixed(1);
  console.log(`${name.padEnd(28)} ${(ms * 1000).toFixed(1).padStart(7)} us/token  (${vsBefore} us vs before, ${vsText} us vs text only)`);
}
await loaded.dispose();
