/**
 * Where the per-token time of a streamed request goes, layer by layer, on one sequence of one model: node-llama-cpp's
 * own loop, then llamaport's decode loop, the engine's Generation, and the whole HTTP stream (/v1/completions, the
 * OpenAI plugin, frames, Bun.serve), each read in this process. The layers alternate within each round.
 * Usage: bun run bench:tokens [model.gguf | synthetic preset] [tokens=512] [rounds=7]
 * Profile one layer: bun --cpu-prof --cpu-prof-md bench/tokenPath.ts demo 512 7 http
 * Run it on a quiet machine: the differences are a few microseconds per token.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { defaultCacheDir } from "../src/config/environment.ts";
import { decode } from "../src/engine/decode.ts";
import { importNodeLlamaCpp, nodeLlamaCppSpecifier } from "../src/engine/nodeLlamaCpp.ts";
import { OffThreadTokenizer } from "../src/engine/OffThreadTokenizer.ts";
import { renderRaw } from "../src/engine/renderPrompt.ts";
import { resolveSampling } from "../src/engine/sampling.ts";
import type { GenerationSink } from "../src/engine/StreamingGeneration.ts";
import { tokenBiasFor } from "../src/engine/tokenBias.ts";
import { ensureSyntheticModel, syntheticPresets } from "../src/gguf/syntheticModels.ts";
import { startLlamaport } from "../src/server/startLlamaport.ts";
import { loadOneModel } from "../tests/support/loadOneModel.ts";

const argument = process.argv[2] || "demo";
const cacheDir = defaultCacheDir(process.env);
const modelPath = argument in syntheticPresets ? await ensureSyntheticModel(argument, cacheDir) : argument;
const tokens = Number(process.argv[3] ?? 512);
const rounds = Number(process.argv[4] ?? 7);
const only = process.argv[5];
const prompt = "Once upon a time";

const nlc = await importNodeLlamaCpp();
const loaded = await loadOneModel(modelPath, { name: "m", context: tokens + 64 });
const sampling = resolveSampling({ model: "m", maxTokens: tokens, temperature: 0, ignoreEos: true }, {});
const tokenBias = tokenBiasFor(nlc, loaded, sampling);
const rendered = await renderRaw(loaded, prompt, { tokenizer: new OffThreadTokenizer(nodeLlamaCppSpecifier), limit: loaded.contextSize });

/** node-llama-cpp alone: evaluate, detokenize each token (what streaming text needs at least). */
async function nodeLlamaCpp(): Promise<void> {
  const { sequence, release } = await loaded.pool.acquire(undefined);
  try {
    await sequence.clearHistory();
    const input = rendered.tokens as Token[];
    let text = "";
    let count = 0;
    const options = { temperature: 0, topK: 40, topP: 0.95, minP: 0.05, seed: 1, tokenBias };
    for await (const token of sequence.evaluate(input, options)) {
      text += loaded.model.detokenize([token]);
      if (++count >= tokens) break;
    }
    if (text.length === 0) throw new Error("no text");
  } finally {
    release();
  }
}

/** llamaport's decode loop (detokenizer with context, output path) into a sink that keeps nothing. */
async function decodeLoop(): Promise<void> {
  const { sequence, release } = await loaded.pool.acquire(undefined);
  try {
    await sequence.clearHistory();
    const sink: GenerationSink = { start() {}, text() {}, signal: new AbortController().signal };
    const result = await decode(nlc, loaded, sequence, {
      prompt: rendered,
      sampling,
      tokenBias,
      cachedTokens: 0,
      window: loaded.contextSize,
      signal: sink.signal,
      sink,
    });
    if (result.completionTokens !== tokens) throw new Error(`decode generated ${result.completionTokens}`);
  } finally {
    release();
  }
}

const dir = mkdtempSync(join(tmpdir(), "llamaport-tokenpath-"));
const modelsFile = join(dir, "models.yaml");
await Bun.write(
  modelsFile,
  `models:\n  m:\n    source: ${JSON.stringify(modelPath)}\n    context: ${tokens + 64}\n    parallel: 1\n    threads: 1\n    speculative: off\n`,
);
const server = await startLlamaport({ port: 0, models: modelsFile, cacheDir, plugins: join(dir, "plugins"), watch: false, log: () => {} });
await server.ready;
const request = { model: "m", prompt, raw: true, maxTokens: tokens, temperature: 0, ignoreEos: true } as const;

/** The engine's Generation, read event by event (StreamingGeneration, model manager, pool), no HTTP. */
async function generation(): Promise<void> {
  let text = "";
  for await (const event of server.engine.complete(request)) if (event.type === "text") text += event.text;
  if (text.length === 0) throw new Error("no text");
}

/** The whole server path: POST /v1/completions with stream: true, read to the end. */
async function http(): Promise<void> {
  const response = await fetch(`${server.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", prompt, max_tokens: tokens, temperature: 0, ignore_eos: true, stream: true }),
  });
  let bytes = 0;
  for await (const chunk of response.body!) bytes += chunk.length;
  if (bytes === 0) throw new Error("no body");
}

const layers: [string, () => Promise<void>][] = [
  ["node-llama-cpp evaluate + detokenize", nodeLlamaCpp],
  ["+ llamaport decode loop", decodeLoop],
  ["+ engine Generation (no HTTP)", generation],
  ["+ HTTP stream /v1/completions", http],
];
if (only) layers.splice(0, layers.length, ...layers.filter(([name]) => name.includes(only)));
const samples = new Map<string, number[]>(layers.map(([name]) => [name, []]));
for (const [, run] of layers) await run(); // warm-up
for (let round = 0; round < rounds; round++)
  for (const [name, run] of layers) {
    const started = performance.now();
    await run();
    samples.get(name)!.push(((performance.now() - started) * 1000) / tokens);
  }
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `model ${modelPath}, ${tokens} tokens per run, 1 thread, ${rounds} rounds, medians; load ${(await Bun.file("/proc/loadavg").text()).trim()}`,
);
let previous: number | undefined;
for (const [name] of layers) {
  const us = median(samples.get(name)!);
  console.log(
    `${name.padEnd(40)} ${us.toFixed(1).padStart(7)} us/token${previous === undefined ? "" : `  (+${(us - previous).toFixed(1)})`}`,
  );
  previous = us;
}
await server.stop();
await loaded.dispose();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
