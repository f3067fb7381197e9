/** Issue-13 measurement: tokens/s of llama-server's /completion streaming vs /v1/completions streaming, same request, same server. */
// Usage: bun bench/llamacppStream.ts [path/to/model.gguf] [tokens=256] [rounds=7]
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { defaultCacheDir } from "../src/config/environment.ts";
import { ensureSyntheticModel } from "../src/gguf/syntheticModels.ts";
import { startServerProcess } from "./serverProcess.ts";

const stories = resolve(import.meta.dir, "../../shared/models/stories260K.gguf");
const modelPath = process.argv[2] || (existsSync(stories) ? stories : await ensureSyntheticModel("demo", defaultCacheDir(process.env)));
const tokens = Number(process.argv[3] ?? 256);
const rounds = Number(process.argv[4] ?? 7);
const prompt = "Once upon a time";

const server = await startServerProcess(modelPath);
const url = server.url;

/** Both routes get the same sampling and the same raw prompt; each is asked for exactly `tokens` tokens. */
const routes = {
  "/completion": { model: "m", prompt, stream: true, n_predict: tokens, temperature: 0, ignore_eos: true },
  "/v1/completions": { model: "m", prompt, stream: true, max_tokens: tokens, temperature: 0, ignore_eos: true },
} as const;

/** One streamed request: tokens/s over the whole request, and after the first chunk (the per-token cost alone). */
async function measure(path: keyof typeof routes): Promise<{ whole: number; streaming: number }> {
  const started = performance.now();
  const response = await fetch(`${url}${path}`, { method: "POST", body: JSON.stringify(routes[path]) });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let first = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (first === 0) first = performance.now();
    text += decoder.decode(value, { stream: true });
  }
  const ended = performance.now();
  const events = text.split("\n\n").filter((e) => e.startsWith("data: {"));
  const generated = path === "/completion" ? JSON.parse(events.at(-1)!.slice(6)).tokens_predicted : events.length - 1; // the last is the finish chunk
  if (path === "/completion" && generated !== tokens) throw new Error(`${path} generated ${generated} tokens`);
  return { whole: tokens / ((ended - started) / 1000), streaming: (tokens - 1) / ((ended - first) / 1000) };
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<keyof typeof routes, { whole: number[]; streaming: number[] }> = {
  "/completion": { whole: [], streaming: [] },
  "/v1/completions": { whole: [], streaming: [] },
};
for (const path of Object.keys(routes) as (keyof typeof routes)[]) await measure(path); // warm up both
for (let i = 0; i < rounds; i++) {
  // Alternate which goes first, so drift on a shared machine hits both alike.
  const order = (i % 2 === 0 ? ["/completion", "/v1/completions"] : ["/v1/completions", "/completion"]) as (keyof typeof routes)[];
  for (const path of order) {
    const { whole, streaming } = await measure(path);
    results[path].whole.push(whole);
    results[path].streaming.push(streaming);
  }
}
const native = results["/completion"];
const openai = results["/v1/completions"];
console.log(
  `model ${modelPath}, ${tokens} tokens, EOS ignored, temperature 0, 1 thread, ${rounds} rounds (median), server in its own process`,
);
console.log(
  `/completion stream:      ${median(native.whole).toFixed(0)} tok/s whole request, ${median(native.streaming).toFixed(0)} tok/s after the first chunk`,
);
console.log(
  `/v1/completions stream:  ${median(openai.whole).toFixed(0)} tok/s whole request, ${median(openai.streaming).toFixed(0)} tok/s after the first chunk`,
);
console.log(
  `ratio /completion / /v1/completions: ${(median(native.whole) / median(openai.whole)).toFixed(3)} (whole), ${(median(native.streaming) / median(openai.streaming)).toFixed(3)} (after the first chunk)`,
);
await server.stop();
