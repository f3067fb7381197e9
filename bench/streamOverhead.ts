/** Issue-2 measurement: tokens/s of node-llama-cpp called directly vs the same generation streamed through /v1/chat/completions. */
// Usage: bun bench/streamOverhead.ts [path/to/model.gguf] [tokens=256] [rounds=5]
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { getLlamaRuntime, importNodeLlamaCpp } from "../src/engine/nodeLlamaCpp.ts";
import { defaultCacheDir } from "../src/config/environment.ts";
import { ensureSyntheticModel } from "../src/gguf/syntheticModels.ts";
import { startServerProcess } from "./serverProcess.ts";

const stories = resolve(import.meta.dir, "../../shared/models/stories260K.gguf");
const modelPath = process.argv[2] ?? (existsSync(stories) ? stories : await ensureSyntheticModel("demo", defaultCacheDir(process.env)));
const tokens = Number(process.argv[3] ?? 256);
const rounds = Number(process.argv[4] ?? 5);
const prompt = "Once upon a time";

const server = await startServerProcess(modelPath);

const nlc = await importNodeLlamaCpp();
const llama = await getLlamaRuntime();
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 1024, sequences: 1, threads: 1 });
const sequence = context.getSequence();
const noEos = new nlc.TokenBias(model.tokenizer).set(model.tokens.eos!, "never");
// Same prompt tokens the server evaluates: the chat template of this model around the user message.
const chatWrapper = nlc.resolveChatWrapper(model);
// Both sides keep their sequence between rounds, so both reuse the prompt prefix from the previous round.
const rendered = chatWrapper
  .generateContextState({
    chatHistory: [
      { type: "user", text: prompt },
      { type: "model", response: [] },
    ],
  })
  .contextText.tokenize(model.tokenizer);

async function direct(): Promise<number> {
  const completion = new nlc.LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  let count = 0;
  const started = performance.now();
  await completion.generateCompletionWithMeta(rendered.slice(1), {
    maxTokens: tokens,
    temperature: 0,
    tokenBias: noEos,
    repeatPenalty: false,
    onToken: (t) => (count += t.length),
  });
  const seconds = (performance.now() - started) / 1000;
  completion.dispose({ disposeSequence: false });
  if (count !== tokens) throw new Error(`direct generated ${count} tokens`);
  return tokens / seconds;
}

async function viaServer(): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({
      model: "m",
      stream: true,
      max_tokens: tokens,
      temperature: 0,
      ignore_eos: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: prompt }],
    }),
  });
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
  const seconds = (performance.now() - started) / 1000;
  streamingRates.push((tokens - 1) / ((performance.now() - first) / 1000));
  const usage = JSON.parse(text.split("\n\n").at(-3)!.slice(6)).usage;
  if (usage.completion_tokens !== tokens) throw new Error(`server generated ${usage.completion_tokens} tokens`);
  return tokens / seconds;
}

const streamingRates: number[] = [];
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
await direct();
await viaServer();
const d: number[] = [];
const s: number[] = [];
for (let i = 0; i < rounds; i++) {
  d.push(await direct());
  s.push(await viaServer());
}
console.log(`model ${modelPath}, ${tokens} tokens, EOS suppressed, 1 thread, ${rounds} rounds (median)`);
console.log(`node-llama-cpp direct:        ${median(d).toFixed(0)} tok/s`);
console.log(`/v1/chat/completions stream:  ${median(s).toFixed(0)} tok/s (wall time of the whole HTTP request, server in its own process)`);
console.log(
  `overhead per token:           ${((1 / median(s) - 1 / median(d)) * 1e6).toFixed(0)} us (includes the request's fixed costs spread over ${tokens} tokens)`,
);
console.log(
  `server rate after the first token: ${median(streamingRates).toFixed(0)} tok/s (per-token cost alone: ${((1 / median(streamingRates) - 1 / median(d)) * 1e6).toFixed(0)} us over direct)`,
);
console.log(`ratio server/direct:          ${(median(s) / median(d)).toFixed(3)}`);
await context.dispose();
await model.dispose();
await server.stop();
