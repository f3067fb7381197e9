/**
 * Prompt-lookup speculative decoding (PromptLookup.ts, and the validation fix in patches/node-llama-cpp+3.21.1.patch):
 * every correct prediction is accepted, greedy output is the same with and without it, requests with penalties do not
 * speculate, `auto` pauses drafts that cost more than they save, and aborting or disposing mid-draft leaves nothing
 * broken.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import type { ModelEntry } from "../../src/config/loadModelsFile.ts";
import { type DecodeResult, decode } from "../../src/engine/decode.ts";
import type { LoadedModel } from "../../src/engine/LoadedModel.ts";
import { importNodeLlamaCpp, type NodeLlamaCppModule, nodeLlamaCppSpecifier } from "../../src/engine/nodeLlamaCpp.ts";
import { PromptLookupPredictor, promptLookupPolicy } from "../../src/engine/PromptLookup.ts";
import { OffThreadTokenizer } from "../../src/engine/OffThreadTokenizer.ts";
import { type RenderedPrompt, renderRaw } from "../../src/engine/renderPrompt.ts";
import { resolveSampling } from "../../src/engine/sampling.ts";
import { tokenBiasFor } from "../../src/engine/tokenBias.ts";
import type { GeneratedToken, GenerateOptions } from "../../src/engine/types.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { hasSharedModels, noteSharedModels, startTestServer, storiesModel, testCacheDir } from "../support/testServer.ts";
import { loadOneModel } from "../support/loadOneModel.ts";

noteSharedModels("tests/engine/speculative.test.ts");

let nlc: NodeLlamaCppModule;
const loadedModels: LoadedModel[] = [];
const tokenizer = new OffThreadTokenizer(nodeLlamaCppSpecifier);

/** A raw prompt as the engine renders one (texts tokenized with special tokens parsed, BOS first). */
function render(loaded: LoadedModel, prompt: readonly (string | number)[]): Promise<RenderedPrompt> {
  return renderRaw(loaded, prompt, { tokenizer, limit: loaded.contextSize });
}

async function load(path: string, speculative: ModelEntry["speculative"], parallel = 1): Promise<LoadedModel> {
  const loaded = await loadOneModel(path, { name: `${speculative}`, context: 1024, parallel, maxQueue: 4, speculative });
  loadedModels.push(loaded);
  return loaded;
}

interface Run {
  tokens: Token[];
  result: DecodeResult;
  /** Top-2 log probabilities per generated token, with `logprobs`. */
  alternatives?: GeneratedToken[];
}

/** One greedy request on a cleared sequence (or, with `keep`, on whatever the sequence holds, reusing its prefix). */
async function generate(
  loaded: LoadedModel,
  prompt: readonly (string | number)[],
  maxTokens: number,
  options: Partial<GenerateOptions> & { keep?: boolean; signal?: AbortSignal } = {},
): Promise<Run> {
  const { sequence, release } = await loaded.pool.acquire(undefined);
  try {
    if (!options.keep) await sequence.clearHistory();
    const sampling = resolveSampling({ model: "m", maxTokens, temperature: 0, ignoreEos: true, reportContext: true, ...options }, {});
    const rendered = await render(loaded, prompt);
    const reported: GeneratedToken[] = [];
    const signal = options.signal ?? new AbortController().signal;
    const sink = { start() {}, text: (_: string, tokens?: GeneratedToken[]) => reported.push(...(tokens ?? [])), signal };
    const cachedTokens = options.keep
      ? Math.min(sequence.compareContextTokens(rendered.tokens).firstDifferentIndex, rendered.tokens.length - 1)
      : 0;
    const result = await decode(nlc, loaded, sequence, {
      prompt: rendered,
      sampling,
      tokenBias: tokenBiasFor(nlc, loaded, sampling),
      cachedTokens,
      window: loaded.contextSize,
      signal,
      sink,
    });
    const tokens = (result.context ?? []).slice(rendered.tokens.length) as Token[];
    return { tokens, result, ...(options.logprobs !== undefined && { alternatives: reported }) };
  } finally {
    release();
  }
}

/** A prompt the model retells: its own greedy continuation of `seed`, then `seed` again (as tokens, so nothing re-tokenizes). */
async function retellPrompt(loaded: LoadedModel, seed: string, length: number): Promise<number[]> {
  const first = await generate(loaded, [seed], length);
  const again = (await render(loaded, [`\n${seed}`])).tokens.slice(1);
  return [...(first.result.context as number[]), ...(again as number[])];
}

/** A cycle model's own text: what it generated after a short seed, as tokens. */
async function ownText(loaded: LoadedModel, length: number): Promise<number[]> {
  return (await generate(loaded, ["Story: the of and"], length)).result.context as number[];
}

beforeAll(async () => {
  nlc = await importNodeLlamaCpp();
});
afterAll(async () => {
  for (const loaded of loadedModels) await loaded.dispose();
  tokenizer.dispose();
});

test("the speculative validation patch is installed (npm ci runs patch-package from postinstall)", () => {
  const file = join(import.meta.dir, "../../node_modules/node-llama-cpp/dist/evaluator/LlamaContext/LlamaContext.js");
  expect(readFileSync(file, "utf8")).toContain("llamaport speculative patch");
});

describe("on a model that continues its own text (tiny-cycle)", () => {
  let on: LoadedModel;
  let off: LoadedModel;
  beforeAll(async () => {
    const path = await ensureSyntheticModel("tiny-cycle", testCacheDir);
    on = await load(path, "on");
    off = await load(path, "off");
  });

  test("every prediction is accepted, several per decode step, and the text is the same as without", async () => {
    const prompt = await ownText(off, 200);
    const plain = await generate(off, prompt, 160);
    // Count decode steps through node-llama-cpp's native context (as tests/engine/batching.test.ts does).
    const context = on.context as unknown as { _ctx: Record<string, unknown> };
    const native = context._ctx;
    let decodes = 0;
    context._ctx = new Proxy(native, {
      get(target, key) {
        const value = Reflect.get(target, key);
        if (typeof value !== "function") return value;
        if (key !== "decodeBatch") return value.bind(target);
        return (...args: unknown[]) => {
          decodes++;
          return value.apply(target, args);
        };
      },
    });
    let fast: Run;
    try {
      fast = await generate(on, prompt, 160);
    } finally {
      context._ctx = native;
    }
    expect(fast.tokens).toEqual(plain.tokens);
    const { predicted, accepted } = fast.result.speculation!;
    // Unpatched node-llama-cpp accepts at most the first prediction of each step: about half of them.
    expect(accepted).toBe(predicted);
    expect(accepted).toBeGreaterThan(140);
    // Drafts of 4, 8, 16, 32...: a handful of steps for 160 tokens, where one token per step takes 160.
    expect(decodes).toBeLessThan(16);
  });

  test("a prompt that disagrees with the model now and then: refuted drafts, the same text as without", async () => {
    const prompt = (await ownText(off, 200)).map((token, i) => (i > 8 && i % 9 === 0 ? prompt0(token) : token));
    const plain = await generate(off, prompt, 120);
    const fast = await generate(on, prompt, 120);
    expect(fast.tokens).toEqual(plain.tokens);
    const { predicted, accepted } = fast.result.speculation!;
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(predicted);
  });

  test("requests with a repeat penalty do not speculate (node-llama-cpp would sample drafts with a stale penalty window)", async () => {
    const prompt = await ownText(off, 200);
    const penalized = { repeatPenalty: 1.3, presencePenalty: 0.5 };
    const plain = await generate(off, prompt, 64, penalized);
    const fast = await generate(on, prompt, 64, penalized);
    expect(fast.result.speculation).toBeUndefined();
    expect(fast.tokens).toEqual(plain.tokens);
    // The same request without the penalty does speculate.
    expect((await generate(on, prompt, 64)).result.speculation?.accepted).toBeGreaterThan(0);
  });

  test("seeded sampling with speculation is repeatable", async () => {
    const prompt = await ownText(off, 200);
    const sampled = { temperature: 0.8, seed: 7 };
    const a = await generate(on, prompt, 64, sampled);
    const b = await generate(on, prompt, 64, sampled);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.result.speculation?.predicted).toBeGreaterThan(0);
  });

  test("a request that ends with validated predictions left over: the next one reusing its prefix continues correctly", async () => {
    const prompt = await ownText(off, 200);
    // 37 tokens: stops in the middle of a 32-token draft, leaving accepted predictions in the sequence's cache.
    await generate(on, prompt, 37);
    const continued = await generate(on, prompt, 80, { keep: true });
    const fresh = await generate(off, prompt, 80);
    expect(continued.tokens).toEqual(fresh.tokens);
  });

  test("aborting mid-draft ends the request as aborted and the sequence serves the next one correctly", async () => {
    const prompt = await ownText(off, 200);
    const controller = new AbortController();
    const unhandled: unknown[] = [];
    const onUnhandled = (error: unknown) => unhandled.push(error);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { sequence, release } = await on.pool.acquire(undefined);
      let result: DecodeResult;
      try {
        await sequence.clearHistory();
        const sampling = resolveSampling({ model: "m", maxTokens: 400, temperature: 0, ignoreEos: true }, {});
        let pieces = 0;
        const sink = {
          start() {},
          text() {
            if (++pieces === 40) controller.abort();
          },
          signal: controller.signal,
        };
        result = await decode(nlc, on, sequence, {
          prompt: await render(on, prompt),
          sampling,
          tokenBias: tokenBiasFor(nlc, on, sampling),
          cachedTokens: 0,
          window: on.contextSize,
          signal: controller.signal,
          sink,
        });
      } finally {
        release();
      }
      expect(result.finishReason).toBe("abort");
      expect(result.completionTokens).toBeLessThan(400);
      const after = await generate(on, prompt, 48, { keep: true });
      expect(after.tokens).toEqual((await generate(off, prompt, 48)).tokens);
      await Bun.sleep(0);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  test("disposing the model mid-draft (shutdown) ends the request with an error, and nothing is left unhandled", async () => {
    const loaded = await load(await ensureSyntheticModel("tiny-cycle", testCacheDir), "on");
    const prompt = await ownText(off, 200);
    const unhandled: unknown[] = [];
    const onUnhandled = (error: unknown) => unhandled.push(error);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { sequence } = await loaded.pool.acquire(undefined);
      const sampling = resolveSampling({ model: "m", maxTokens: 900, temperature: 0, ignoreEos: true }, {});
      let pieces = 0;
      let disposing: Promise<void> | undefined;
      const sink = {
        start() {},
        text() {
          if (++pieces === 30) disposing = loaded.dispose();
        },
        signal: new AbortController().signal,
      };
      const outcome = await decode(nlc, loaded, sequence, {
        prompt: await render(loaded, prompt),
        sampling,
        tokenBias: tokenBiasFor(nlc, loaded, sampling),
        cachedTokens: 0,
        window: loaded.contextSize,
        signal: sink.signal,
        sink,
      }).then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      );
      await disposing;
      expect(pieces).toBeGreaterThanOrEqual(30);
      expect("error" in outcome ? String(outcome.error) : `finished: ${outcome.result.finishReason}`).toMatch(/dispos/i);
      await Bun.sleep(10);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

/** Another word of the cycle model's vocabulary than `token` (a nearby word piece). */
function prompt0(token: number): number {
  return token === 300 ? 301 : 300;
}

describe("greedy output with and without speculation (retelling its own story)", () => {
  const cases = [
    { name: "stories260K", path: async () => storiesModel, shared: true },
    { name: "demo (writer, random weights)", path: () => ensureSyntheticModel("demo", testCacheDir), shared: false },
    { name: "tiny-32k (writer, 32k vocabulary)", path: () => ensureSyntheticModel("tiny-32k", testCacheDir), shared: false },
  ];
  for (const { name, path, shared } of cases) {
    test.skipIf(shared && !hasSharedModels)(`${name}: the same tokens, or a first difference at a near-tie`, async () => {
      const on = await load(await path(), "on");
      const off = await load(await path(), "off");
      let predicted = 0;
      for (const seed of ["Once upon a time", "The little dog", "Lily and Tom went", "One day, a bird"]) {
        const prompt = await retellPrompt(off, seed, 60);
        const plain = await generate(off, prompt, 64);
        const fast = await generate(on, prompt, 64);
        predicted += fast.result.speculation?.predicted ?? 0;
        const at = plain.tokens.findIndex((token, i) => token !== fast.tokens[i]);
        if (at < 0) continue;
        // Batched evaluation (a draft) rounds differently from one token at a time; that may only ever flip a
        // near-tie. Anything else is a bug in how drafts are checked.
        const scored = await generate(off, prompt, at + 1, { logprobs: 2 });
        const [first, second] = scored.alternatives![at]!.top ?? [];
        const gap = Math.abs((first?.logprob ?? 0) - (second?.logprob ?? -Infinity));
        console.log(`${name}, "${seed}": differs from token ${at} on, where the top two are ${gap.toExponential(2)} apart (log p)`);
        expect(gap).toBeLessThan(1e-3);
      }
      expect(predicted).toBeGreaterThan(0);
    });
  }
});

describe("PromptLookupPredictor's auto policy (a simulated sequence and clock)", () => {
  /** node-llama-cpp's side of the protocol: it asks for a draft, decodes, validates, hands tokens out, asks again. */
  function simulate(options: { setting: "auto" | "on"; alone?: () => boolean; msPerStep: (draft: number) => number; acceptAll?: boolean }) {
    let now = 0;
    const counters = { used: 0, unused: 0, validated: 0, refuted: 0 };
    const sequence = { tokenPredictions: counters } as unknown as LlamaContextSequence;
    const predictor = new PromptLookupPredictor(nlc, options.setting, options.alone ?? (() => true), () => now);
    // A prompt that repeats: the lookup always finds the next tokens in it.
    const prompt = Array.from({ length: 400 }, (_, i) => (i % 50) + 10) as Token[];
    predictor.begin(prompt);
    const state = prompt.slice();
    predictor.reset({ targetSequence: sequence, stateTokens: state, evaluateOptions: {} });
    const drafts: number[] = [];
    let generated = 0;
    const step = () => {
      const draft = predictor.predictTokens();
      drafts.push(draft.length);
      now += options.msPerStep(draft.length);
      const accepted = options.acceptAll === false ? 0 : draft.length;
      counters.validated += accepted;
      counters.refuted += draft.length - accepted;
      const next = [...draft.slice(0, accepted), ((state.at(-1)! - 10 + 1 + accepted) % 50) + 10] as Token[];
      for (const token of next) {
        state.push(token);
        predictor.pushTokens([token]);
      }
      generated += next.length;
    };
    return {
      predictor,
      drafts,
      run(tokens: number) {
        while (generated < tokens) step();
      },
    };
  }

  test("auto: single steps first, then drafts while they pay; their length doubles up to the maximum", () => {
    // Like the 135M model measured here: 10 ms for one token, 27 ms plus 2.2 ms per drafted token.
    const sim = simulate({ setting: "auto", msPerStep: (d) => (d === 0 ? 10 : 27 + 2.2 * d) });
    sim.run(300);
    // The first step (the prompt's, not timed) and the timed single steps after it, then drafts.
    const singles = promptLookupPolicy.baselineSteps;
    expect(sim.drafts.slice(0, singles + 1)).toEqual([0, 0, 0, 0]);
    expect(sim.drafts.slice(singles + 1, singles + 5)).toEqual([4, 8, 16, 32]);
    expect(sim.drafts.at(-1)).toBe(promptLookupPolicy.draft.max);
    expect(sim.predictor.end().accepted).toBeGreaterThan(250);
  });

  test("auto: drafts that cost more per token than single steps pause for a while, then are tried again", () => {
    // Every draft refuted: each costs a step and gives one token.
    const sim = simulate({ setting: "auto", msPerStep: (d) => (d === 0 ? 10 : 27 + 2.2 * d), acceptAll: false });
    sim.run(600);
    const drafted = sim.drafts.filter((d) => d > 0).length;
    // Two drafts to judge, then a pause of 128 tokens, two more, then 256...
    expect(drafted).toBeLessThanOrEqual(3 * promptLookupPolicy.judgeSteps);
    expect(drafted).toBeGreaterThanOrEqual(2 * promptLookupPolicy.judgeSteps);
    const firstPause = sim.drafts.indexOf(
      0,
      sim.drafts.findIndex((d) => d > 0),
    );
    expect(sim.drafts.slice(firstPause, firstPause + promptLookupPolicy.pauseTokens - 1).every((d) => d === 0)).toBe(true);
  });

  test("auto drafts only while its request is the only one on the context; on drafts regardless", () => {
    let alone = true;
    const auto = simulate({ setting: "auto", alone: () => alone, msPerStep: (d) => (d === 0 ? 10 : 12) });
    auto.run(60);
    expect(auto.drafts.at(-1)).toBeGreaterThan(0);
    alone = false; // another request starts on the same context
    const before = auto.drafts.length;
    auto.run(120);
    expect(auto.drafts.slice(before).every((d) => d === 0)).toBe(true);
    const forced = simulate({ setting: "on", alone: () => false, msPerStep: (d) => (d === 0 ? 10 : 100) });
    forced.run(100);
    expect(forced.drafts[0]).toBe(promptLookupPolicy.draft.start);
  });
});

test("auto gives small models no predictor (a decode step is too cheap to win); on gives every sequence one", async () => {
  const path = await ensureSyntheticModel("demo", testCacheDir);
  const auto = await load(path, "auto", 2);
  const on = await load(path, "on", 2);
  const off = await load(path, "off", 2);
  const predictors = async (loaded: LoadedModel) => {
    const leases = [await loaded.pool.acquire(undefined), await loaded.pool.acquire(undefined)];
    const found = leases.map((lease) => lease.sequence.tokenPredictor instanceof PromptLookupPredictor);
    for (const lease of leases) lease.release();
    return found;
  };
  expect(await predictors(auto)).toEqual([false, false]);
  expect(await predictors(on)).toEqual([true, true]);
  expect(await predictors(off)).toEqual([false, false]);
});

test("a generation's summary counts what speculation did (and a request that did not speculate has no count)", async () => {
  await using server = await startTestServer({
    cycle: { source: "synthetic:tiny-cycle", context: 1024, parallel: 1, speculative: "on" },
    plain: { source: "synthetic:tiny-cycle", context: 1024, parallel: 1, speculative: "off" },
  });
  const seed = await server.engine
    .complete({ model: "plain", prompt: "Story: the of and", raw: true, maxTokens: 150, temperature: 0, reportContext: true })
    .collect();
  const prompt = seed.summary.context!;
  const request = { prompt, raw: true, maxTokens: 100, temperature: 0, ignoreEos: true };
  const drafted = await server.engine.complete({ model: "cycle", ...request }).collect();
  const plain = await server.engine.complete({ model: "plain", ...request }).collect();
  expect(drafted.text).toBe(plain.text);
  expect(drafted.summary.speculation?.accepted).toBeGreaterThan(80);
  expect(drafted.summary.speculation?.predicted).toBe(drafted.summary.speculation?.accepted);
  expect(plain.summary.speculation).toBeUndefined();
});
