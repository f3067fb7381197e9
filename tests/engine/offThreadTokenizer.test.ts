/** Long texts are tokenized on a worker thread, with exactly the tokens the main thread would give, while the event loop stays free. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { LlamaModel } from "node-llama-cpp";
import type { LoadedModel } from "../../src/engine/LoadedModel.ts";
import { getLlamaRuntime, importNodeLlamaCpp, nodeLlamaCppSpecifier } from "../../src/engine/nodeLlamaCpp.ts";
import { inlineTokenizeChars, OffThreadTokenizer } from "../../src/engine/OffThreadTokenizer.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { mainThreadCpuMs } from "../support/healthWait.ts";
import { hasSharedModels, noteSharedModels, randomLlama2Model, testCacheDir } from "../support/testServer.ts";

noteSharedModels("tests/engine/offThreadTokenizer.test.ts");

const tokenizer = new OffThreadTokenizer(nodeLlamaCppSpecifier);
const models: { name: string; loaded: LoadedModel }[] = [];

beforeAll(async () => {
  const llama = await getLlamaRuntime({ maxThreads: 1 });
  const paths = [["synthetic tiny-32k", await ensureSyntheticModel("tiny-32k", testCacheDir)]];
  if (hasSharedModels) paths.push(["llama-2 (real 32k tokenizer)", randomLlama2Model]);
  for (const [name, modelPath] of paths) {
    const model: LlamaModel = await llama.loadModel({ modelPath: modelPath!, gpuLayers: 0 });
    // Only `model` and `modelPath` are used by the tokenizer.
    models.push({ name: name!, loaded: { model, modelPath } as unknown as LoadedModel });
  }
});
afterAll(async () => {
  tokenizer.dispose();
  for (const { loaded } of models) await loaded.model.dispose();
});

const text = (chars: number) => {
  const words = "Once upon a time, <s> a dog named Émile ran 42 km\n\tto see 日本 🐕 friends. ";
  return words.repeat(Math.ceil(chars / words.length)).slice(0, chars);
};

test("plain text: the worker's tokens equal the main thread's, with and without special tokens", async () => {
  const long = text(inlineTokenizeChars + 10_000);
  for (const { name, loaded } of models)
    for (const special of [false, true]) {
      const offThread = await tokenizer.text(loaded, long, special);
      expect(`${name} special=${special}: ${offThread.length}`).toBe(
        `${name} special=${special}: ${loaded.model.tokenize(long, special).length}`,
      );
      expect(offThread).toEqual(loaded.model.tokenize(long, special));
    }
});

test("a rendered chat prompt: the worker's tokens equal the main thread's", async () => {
  const { LlamaText, SpecialToken, SpecialTokensText } = await importNodeLlamaCpp();
  const prompt = LlamaText([new SpecialToken("BOS"), new SpecialTokensText("<s>[INST] "), text(inlineTokenizeChars + 10_000), " [/INST]"]);
  for (const { loaded } of models) {
    const chars = prompt.toString().length;
    expect(await tokenizer.llamaText(loaded, prompt, chars)).toEqual(prompt.tokenize(loaded.model.tokenizer));
  }
});

test("while the worker tokenizes 2,000,000 characters, timers on the main thread keep firing", async () => {
  const { loaded } = models[0]!;
  // On the main thread this takes seconds here.
  const long = text(2_000_000);
  // Each gap between timer ticks, counted in the CPU time the main thread used meanwhile: a shared machine may leave
  // this process without CPU for a while (see tests/support/healthWait.ts), a blocked thread uses it all.
  let longestBusy = 0;
  let last = performance.now();
  let lastCpu = mainThreadCpuMs(process.pid);
  const tick = () => {
    const now = performance.now();
    const cpu = mainThreadCpuMs(process.pid);
    longestBusy = Math.max(longestBusy, Number.isNaN(cpu) ? now - last : Math.min(now - last, cpu - lastCpu));
    last = now;
    lastCpu = cpu;
  };
  const timer = setInterval(tick, 5);
  const tokens = await tokenizer.text(loaded, long, false);
  clearInterval(timer);
  // The time since the last tick counts too: a call that blocks gives the timer no chance to fire at all.
  tick();
  expect(tokens.length).toBeGreaterThan(100_000);
  expect(longestBusy).toBeLessThan(100);
});
