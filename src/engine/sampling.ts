/** Merges a request's sampling options over the model's defaults and checks their ranges once, before any work is done. */
import type { SamplingDefaults } from "../config/loadModelsFile.ts";
import { STOP_LIMITS } from "../config/modelsSchema.ts";
import { LlamaportError } from "./EngineError.ts";
import { inlineTokenizeChars } from "./OffThreadTokenizer.ts";
import type { DryPenalty, GenerateOptions, TokenBiasEntry } from "./types.ts";

export interface Sampling {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  /** Always set: a request without one gets a random seed (node-llama-cpp's own default changes only once a second). */
  seed: number;
  maxTokens?: number;
  stop: string[];
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Tokens the penalties look at, prompt included; -1 = the whole context. */
  repeatLastN: number;
  dry?: DryPenalty;
  xtc?: { probability: number; threshold: number };
  tokenBias: TokenBiasEntry[];
  ignoreEos: boolean;
  /** Alternatives per token, when log probabilities are reported. */
  logprobs?: number;
  reportTokens: boolean;
  reusePrompt: boolean;
  scorePrompt: boolean;
  reportContext: boolean;
}

/** Used when neither the request nor models.yaml says otherwise; llama-server's defaults. */
export const engineDefaults = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05, repeatLastN: 64 } as const;

/** The most alternatives per token that can be asked for. */
export const maxLogprobs = 100;

export function resolveSampling(request: GenerateOptions, defaults: SamplingDefaults): Sampling {
  const sampling: Sampling = {
    temperature: request.temperature ?? defaults.temperature ?? engineDefaults.temperature,
    topP: request.topP ?? defaults.topP ?? engineDefaults.topP,
    topK: request.topK ?? defaults.topK ?? engineDefaults.topK,
    minP: request.minP ?? defaults.minP ?? engineDefaults.minP,
    seed: request.seed ?? defaults.seed ?? randomSeed(),
    maxTokens: request.maxTokens ?? defaults.maxTokens,
    stop: request.stop ?? defaults.stop ?? [],
    repeatPenalty: request.repeatPenalty ?? defaults.repeatPenalty,
    presencePenalty: request.presencePenalty ?? defaults.presencePenalty,
    frequencyPenalty: request.frequencyPenalty ?? defaults.frequencyPenalty,
    repeatLastN: request.repeatLastN ?? engineDefaults.repeatLastN,
    dry: request.dry,
    xtc: request.xtc,
    tokenBias: request.tokenBias ?? [],
    ignoreEos: request.ignoreEos === true,
    logprobs: request.logprobs,
    reportTokens: request.reportTokens === true || request.logprobs !== undefined,
    // Scoring evaluates the whole prompt, so nothing is reused.
    reusePrompt: request.reusePrompt !== false && request.scorePrompt !== true,
    scorePrompt: request.scorePrompt === true,
    reportContext: request.reportContext === true,
  };
  checkSampling(sampling);
  return sampling;
}

/** A random 32-bit seed. */
export function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

// Problems name the neutral field (`topP`); each plugin maps it to its own wire name (`top_p`, `options.top_p`).
function checkSampling(sampling: Sampling): void {
  for (const name of ["temperature", "topP", "minP", "repeatPenalty", "presencePenalty", "frequencyPenalty"] as const) {
    const value = sampling[name];
    if (value !== undefined) check(Number.isFinite(value), name, "must be a finite number");
  }
  check(sampling.temperature >= 0, "temperature", "must be >= 0");
  check(sampling.topP > 0 && sampling.topP <= 1, "topP", "must be in (0, 1]");
  check(Number.isInteger(sampling.topK) && sampling.topK >= 0, "topK", "must be an integer >= 0");
  check(sampling.minP >= 0 && sampling.minP <= 1, "minP", "must be in [0, 1]");
  if (sampling.maxTokens !== undefined)
    check(Number.isInteger(sampling.maxTokens) && sampling.maxTokens >= 0, "maxTokens", "must be an integer >= 0");
  check(Number.isSafeInteger(sampling.seed), "seed", "must be an integer");
  if (sampling.repeatPenalty !== undefined) check(sampling.repeatPenalty > 0, "repeatPenalty", "must be > 0");
  check(Number.isInteger(sampling.repeatLastN) && sampling.repeatLastN >= -1, "repeatLastN", "must be an integer >= -1");
  check(sampling.stop.length <= STOP_LIMITS.count, "stop", `must be at most ${STOP_LIMITS.count} strings, got ${sampling.stop.length}`);
  check(
    sampling.stop.every((s) => typeof s === "string" && s.length > 0 && s.length <= STOP_LIMITS.length),
    "stop",
    `must be non-empty strings of at most ${STOP_LIMITS.length} characters`,
  );
  if (sampling.logprobs !== undefined)
    check(
      Number.isInteger(sampling.logprobs) && sampling.logprobs >= 0 && sampling.logprobs <= maxLogprobs,
      "logprobs",
      `must be an integer between 0 and ${maxLogprobs}`,
    );
  if (sampling.dry) {
    const { multiplier, base, allowedLength, lastN } = sampling.dry;
    check(multiplier >= 0, "dry", "multiplier must be >= 0");
    check(base === undefined || base >= 1, "dry", "base must be >= 1");
    check(
      allowedLength === undefined || (Number.isInteger(allowedLength) && allowedLength >= 1),
      "dry",
      "allowed length must be an integer >= 1",
    );
    check(lastN === undefined || (Number.isInteger(lastN) && lastN >= -1), "dry", "last n must be an integer >= -1");
  }
  if (sampling.xtc) {
    const { probability, threshold } = sampling.xtc;
    check(probability >= 0 && probability <= 1 && threshold >= 0 && threshold <= 1, "xtc", "probability and threshold must be in [0, 1]");
  }
  // Bias texts are tokenized on the main thread as the generation starts: only as much as takes milliseconds. Each is
  // short too, as a long run without spaces (30,000 CJK characters) takes BPE vocabularies most of a second.
  let biasChars = 0;
  for (const { token, bias } of sampling.tokenBias) {
    check(bias === "never" || Number.isFinite(bias), "tokenBias", 'values must be numbers or "never"');
    if (typeof token !== "string") continue;
    check(
      token.length <= STOP_LIMITS.length,
      "tokenBias",
      `texts must be at most ${STOP_LIMITS.length} characters each, got ${token.length}`,
    );
    biasChars += token.length;
  }
  check(biasChars <= inlineTokenizeChars, "tokenBias", `texts must be at most ${inlineTokenizeChars} characters in all, got ${biasChars}`);
}

function check(ok: boolean, param: string, message: string): void {
  if (!ok) throw new LlamaportError("invalid_request", `${param} ${message}`, { param });
}
