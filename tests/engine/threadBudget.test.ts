/**
 * The thread policy: fixed `threads` from models.yaml, one thread for small models, and otherwise up to the default,
 * limited per decode step by the ThreadBudget to the cores other programs leave free.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { LlamaModel } from "node-llama-cpp";
import type { ModelEntry } from "../../src/config/loadModelsFile.ts";
import { smallModelBytes, threadsFor } from "../../src/engine/LoadedModel.ts";
import { getLlamaRuntime } from "../../src/engine/nodeLlamaCpp.ts";
import { type CpuReading, ThreadBudget, readCpu, threadBudgetPolicy } from "../../src/engine/ThreadBudget.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { testCacheDir } from "../support/testServer.ts";

/** A machine whose counters the test moves: `others` cores busy elsewhere and `own` cores busy here, per step of time. */
function fakeMachine(cores: number) {
  let reading: CpuReading = { busyMs: 0, ownMs: 0, atMs: 0 };
  const budget = new ThreadBudget({ cores, read: () => reading, clock: () => reading.atMs });
  return {
    budget,
    /** `ms` of wall time pass with these loads. */
    pass(ms: number, others: number, own = 1) {
      reading = { busyMs: reading.busyMs + (others + own) * ms, ownMs: reading.ownMs + own * ms, atMs: reading.atMs + ms };
    },
  };
}

const step = threadBudgetPolicy.sampleEveryMs;

describe("ThreadBudget", () => {
  test("a quiet machine: a step gets the threads it wants, up to the cores", () => {
    const { budget, pass } = fakeMachine(4);
    pass(step, 0.05, 2);
    expect(budget.threadsFor(4)).toBe(4);
    expect(budget.threadsFor(2)).toBe(2);
    expect(budget.threadsFor(8)).toBe(4);
  });

  test("other programs busy on a core take it away at the next reading; a light background does not", () => {
    const { budget, pass } = fakeMachine(2);
    pass(step, 0.2);
    expect(budget.threadsFor(2)).toBe(2);
    pass(step, 0.6); // what a busy process gets against 2 spinning threads on 2 cores
    expect(budget.threadsFor(2)).toBe(1);
    expect(budget.othersCores).toBeCloseTo(0.6, 5);
    pass(step, 1.0);
    expect(budget.threadsFor(2)).toBe(1);
  });

  test("threads come back only after readings in a row agree, so a short burst does not make the count flap", () => {
    const { budget, pass } = fakeMachine(2);
    pass(step, 1);
    expect(budget.threadsFor(2)).toBe(1);
    pass(step, 0);
    expect(budget.threadsFor(2)).toBe(1); // one quiet reading
    pass(step, 1);
    expect(budget.threadsFor(2)).toBe(1); // busy again: the count of quiet readings starts over
    for (let i = 1; i < threadBudgetPolicy.raiseAfterReadings; i++) {
      pass(step, 0);
      expect(budget.threadsFor(2)).toBe(1);
    }
    pass(step, 0);
    expect(budget.threadsFor(2)).toBe(2);
  });

  test("the counters are read at most once per sampling interval; steps in between reuse the last answer", () => {
    const { budget, pass } = fakeMachine(2);
    pass(step / 2, 2); // too soon: no reading yet
    expect(budget.threadsFor(2)).toBe(2);
    pass(step / 2, 2);
    expect(budget.threadsFor(2)).toBe(1);
    expect([...budget.steps.entries()].sort()).toEqual([
      [1, 1],
      [2, 1],
    ]);
  });

  test("on 8 cores, a busy background process costs one thread, not all of them", () => {
    const { budget, pass } = fakeMachine(8);
    pass(step, 0.8, 8);
    expect(budget.threadsFor(8)).toBe(7);
  });

  test("readCpu reads this machine's counters: they only grow, and this process's share is within the machine's", () => {
    const a = readCpu();
    let x = 0;
    for (let i = 0; i < 2e6; i++) x += Math.sqrt(i);
    const b = readCpu();
    expect(x).toBeGreaterThan(0);
    expect(b.atMs).toBeGreaterThan(a.atMs);
    expect(b.ownMs).toBeGreaterThan(a.ownMs);
    expect(b.busyMs).toBeGreaterThanOrEqual(a.busyMs);
  });
});

describe("threadsFor (LoadedModel's policy)", () => {
  const entry = (threads?: number) => ({ threads }) as ModelEntry;
  test("models.yaml's threads are fixed; a small model gets one; others get the default, limited per step", () => {
    expect(threadsFor(entry(3), 10 * smallModelBytes, 2)).toEqual({ threads: 3, adaptive: false });
    expect(threadsFor(entry(), smallModelBytes - 1, 8)).toEqual({ threads: 1, adaptive: false });
    expect(threadsFor(entry(), smallModelBytes, 8)).toEqual({ threads: 8, adaptive: true });
    expect(threadsFor(entry(), smallModelBytes, 1)).toEqual({ threads: 1, adaptive: false });
  });
});

describe("a context under the budget (node-llama-cpp 3.21.1's setThreads)", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
    model = await llama.loadModel({ modelPath: await ensureSyntheticModel("demo", testCacheDir) });
  });
  afterAll(async () => {
    await model.dispose();
  });

  test("decodes with the budget's threads, not the context's own; unattached contexts keep theirs", async () => {
    const llama = await getLlamaRuntime();
    const maxThreads = llama.maxThreads;
    // node-llama-cpp's ThreadsSplitter shares the Llama's limit between contexts that decode at about the same time:
    // room for both contexts' 2 threads.
    llama.maxThreads = 4;
    const { budget, pass } = fakeMachine(2);
    pass(step, 1.5); // other programs keep 1.5 cores busy
    const limited = await model.createContext({ contextSize: 128, threads: 2 });
    const free = await model.createContext({ contextSize: 128, threads: 2 });
    try {
      budget.attach(limited);
      for (const context of [limited, free]) {
        const sequence = context.getSequence();
        let tokens = 0;
        for await (const _ of sequence.evaluate(model.tokenize("hello there"), { temperature: 0 })) if (++tokens >= 3) break;
      }
      expect(limited.currentThreads).toBe(1);
      expect(free.currentThreads).toBe(2);
      expect(budget.steps.get(1)).toBeGreaterThanOrEqual(3);
    } finally {
      await limited.dispose();
      await free.dispose();
      llama.maxThreads = maxThreads;
    }
  });
});
