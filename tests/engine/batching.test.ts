/**
 * node-llama-cpp's batching, as patched by patches/node-llama-cpp+3.21.1.patch: concurrent sequences of one context
 * are decoded together, one token of each per step, instead of falling out of step.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decode } from "../../src/engine/decode.ts";
import { getLlamaRuntime, importNodeLlamaCpp, nodeLlamaCppSpecifier } from "../../src/engine/nodeLlamaCpp.ts";
import { OffThreadTokenizer } from "../../src/engine/OffThreadTokenizer.ts";
import { renderRaw } from "../../src/engine/renderPrompt.ts";
import { resolveSampling } from "../../src/engine/sampling.ts";
import { tokenBiasFor } from "../../src/engine/tokenBias.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { testCacheDir } from "../support/testServer.ts";
import { loadOneModel } from "../support/loadOneModel.ts";

const patchedFile = join(import.meta.dir, "../../node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaContext.js");

test("the batching patch is installed (npm ci runs patch-package from postinstall)", () => {
  const installed = readFileSync(patchedFile, "utf8").includes("llamaport batching patch");
  expect(installed, `${patchedFile} lacks the patch: run npm ci (or npx patch-package)`).toBe(true);
});

test("4 concurrent generations take one decode step per token, each step carrying all 4 in sequence id order", async () => {
  const { LlamaCompletion } = await importNodeLlamaCpp();
  const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
  const model = await llama.loadModel({ modelPath: await ensureSyntheticModel("demo", testCacheDir) });
  const context = await model.createContext({ contextSize: 256, sequences: 4, threads: 1 });
  // Count native decode calls and the items they carry.
  const native = (context as unknown as { _ctx: Record<string, unknown> })._ctx;
  let decodes = 0;
  let items = 0;
  // The sequence ids of each step, in the order they were added, and the steps that added them out of order.
  let step: number[] = [];
  const unordered: number[][] = [];
  (context as unknown as { _ctx: unknown })._ctx = new Proxy(native, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      if (key === "decodeBatch")
        return (...args: unknown[]) => {
          decodes++;
          if (step.some((id, i) => i > 0 && id <= step[i - 1]!)) unordered.push(step);
          step = [];
          return value.apply(target, args);
        };
      if (key === "addToBatch")
        return (...args: unknown[]) => {
          items++;
          step.push(args[0] as number);
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
    // With a split KV cache llama.cpp keeps sequences in one ubatch only while their ids increase: every step adds
    // its items in sequence id order (patched; unpatched, in the order the sequences queued).
    expect(unordered).toEqual([]);
  } finally {
    await context.dispose();
    await model.dispose();
  }
});

test("the engine's own loop: 4 requests on one model decode in step, and a request alone decodes without waiting a macrotask", async () => {
  const nlc = await importNodeLlamaCpp();
  const path = await ensureSyntheticModel("demo", testCacheDir);
  const loaded = await loadOneModel(path, { name: "demo", parallel: 4, maxQueue: 4 });
  const counts = countDecodes(loaded.context);
  const tokenizer = new OffThreadTokenizer(nodeLlamaCppSpecifier);
  const tokens = 48;
  // Each piece of text schedules a macrotask marker; a decode that starts after the marker of the latest piece ran
  // waited for a turn of the event loop.
  let pieces = 0;
  let markerRan = 0;
  const run = async (prompt: string) => {
    const lease = await loaded.pool.acquire(undefined);
    try {
      const sampling = resolveSampling({ model: "demo", maxTokens: tokens, temperature: 0, ignoreEos: true }, {});
      const sink = {
        start() {},
        text() {
          const piece = ++pieces;
          setImmediate(() => {
            markerRan = piece;
          });
        },
        signal: new AbortController().signal,
      };
      return await decode(nlc, loaded, lease.sequence, {
        prompt: await renderRaw(loaded, prompt, { tokenizer, limit: loaded.contextSize }),
        sampling,
        tokenBias: tokenBiasFor(nlc, loaded, sampling),
        cachedTokens: 0,
        window: loaded.contextSize,
        signal: sink.signal,
        sink,
      });
    } finally {
      lease.release();
    }
  };
  try {
    // Leased before any decodes, as requests arriving together are.
    const results = await Promise.all(["once upon a time", "the little dog", "a happy day", "she said hello"].map(run));
    expect(results.map((r) => r.completionTokens)).toEqual([tokens, tokens, tokens, tokens]);
    expect(counts.decodes).toBeLessThan(tokens * 1.15);
    expect(counts.items / counts.decodes).toBeGreaterThan(3.5);
    // Alone, a request's next decode starts as soon as its token is queued, before a macrotask scheduled with the
    // last piece of text (node-llama-cpp's default waits one: its "nextCycle" dispatch).
    const before = counts.decodes;
    let waited = 0;
    counts.onDecode = () => {
      if (markerRan === pieces) waited++;
    };
    await run("once upon a time");
    const steps = counts.decodes - before;
    expect(steps).toBeGreaterThanOrEqual(tokens);
    expect(waited).toBeLessThan(steps / 10);
  } finally {
    tokenizer.dispose();
    await loaded.dispose();
  }
});

/** Counts decodeBatch calls and the items added to batches, through a proxy on the context's native object. */
function countDecodes(context: unknown): { decodes: number; items: number; onDecode?: () => void } {
  const holder = context as { _ctx: Record<string, unknown> };
  const native = holder._ctx;
  const counts: { decodes: number; items: number; onDecode?: () => void } = { decodes: 0, items: 0 };
  holder._ctx = new Proxy(native, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      if (key === "decodeBatch" || key === "addToBatch")
        return (...args: unknown[]) => {
          if (key === "decodeBatch") {
            counts.decodes++;
            counts.onDecode?.();
          } else counts.items++;
          return value.apply(target, args);
        };
      return value.bind(target);
    },
  });
  return counts;
}
