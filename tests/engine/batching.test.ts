/**
 * node-llama-cpp's batching, as patched by patches/node-llama-cpp+3.21.1.patch: concurrent sequences of one context
 * are decoded together, one token of each per step, instead of falling out of step.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { getLlamaRuntime, importNodeLlamaCpp } from "../../src/engine/nodeLlamaCpp.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { testCacheDir } from "../support/testServer.ts";

const patchedFile = join(import.meta.dir, "../../node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaContext.js");

test("the batching patch is installed (npm ci runs patch-package from postinstall)", () => {
  const installed = readFileSync(patchedFile, "utf8").includes("llamaport batching patch");
  expect(installed, `${patchedFile} lacks the patch: run npm ci (or npx patch-package)`).toBe(true);
});

test("4 concurrent generations take one decode step per token, each step carrying all 4", async () => {
  const { LlamaCompletion } = await importNodeLlamaCpp();
  const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
  const model = await llama.loadModel({ modelPath: await ensureSyntheticModel("demo", testCacheDir) });
  const context = await model.createContext({ contextSize: 256, sequences: 4, threads: 1 });
  // Count native decode calls and the items they carry.
  const native = (context as unknown as { _ctx: Record<string, unknown> })._ctx;
  let decodes = 0;
  let items = 0;
  (context as unknown as { _ctx: unknown })._ctx = new Proxy(native, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      if (key === "decodeBatch")
        return (...args: unknown[]) => {
          decodes++;
          return value.apply(target, args);
        };
      if (key === "addToBatch")
        return (...args: unknown[]) => {
          items++;
          return value.apply(target, args);
        };
      return value.bind(target);
    },
  });
  const tokens = 48;
  try {
    const prompts = ["once upon a time", "the little dog", "a happy day", "she said hello"];
    const outputs = await Promise.all(
      prompts.map(async (prompt) => {
        const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
        const { metadata } = await completion.generateCompletionWithMeta(prompt, { maxTokens: tokens, temperature: 0 });
        return metadata.stopReason;
      }),
    );
    expect(outputs).toEqual(["maxTokens", "maxTokens", "maxTokens", "maxTokens"]);
    // Unpatched, sequences alternate: about 2.9 items per step and ~1.4 x `tokens` steps. Patched: one step per token
    // (plus the prompt steps), every step holding all four sequences.
    expect(decodes).toBeLessThan(tokens * 1.15);
    expect(items / decodes).toBeGreaterThan(3.5);
  } finally {
    await context.dispose();
    await model.dispose();
  }
});
