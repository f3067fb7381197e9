/** Merges a request's sampling options over the model's defaults and checks their ranges once, before any work is done. */
import type { SamplingDefaults } from "../config/loadModelsFile.ts";
import { LlamaportError } from "./EngineError.ts";
import type { GenerateOptions } from "./types.ts";

export interface Sampling {
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  seed?: number;
  maxTokens?: number;
  stop: string[];
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
}

/** Used when neither the request nor models.yaml says otherwise; llama-server's defaults. */
export const engineDefaults = { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05 } as const;

export function resolveSampling(request: GenerateOptions, defaults: SamplingDefaults): Sampling {
  const sampling: Sampling = {
    temperature: request.temperature ?? defaults.temperature ?? engineDefaults.temperature,
    topP: request.topP ?? defaults.topP ?? engineDefaults.topP,
    topK: request.topK ?? defaults.topK ?? engineDefaults.topK,
    minP: request.minP ?? defaults.minP ?? engineDefaults.minP,
    seed: request.seed ?? defaults.seed,
    maxTokens: request.maxTokens ?? defaults.maxTokens,
    stop: request.stop ?? defaults.stop ?? [],
    repeatPenalty: request.repeatPenalty ?? defaults.repeatPenalty,
    presencePenalty: request.presencePenalty ?? defaults.presencePenalty,
    frequencyPenalty: request.frequencyPenalty ?? defaults.frequencyPenalty,
  };
  // Problems name the neutral field (`topP`); each plugin maps it to its own wire name (`top_p`, `options.top_p`).
  check(sampling.temperature >= 0, "temperature", "must be >= 0");
  check(sampling.topP > 0 && sampling.topP <= 1, "topP", "must be in (0, 1]");
  check(Number.isInteger(sampling.topK) && sampling.topK >= 0, "topK", "must be an integer >= 0");
  check(sampling.minP >= 0 && sampling.minP <= 1, "minP", "must be in [0, 1]");
  if (sampling.maxTokens !== undefined)
    check(Number.isInteger(sampling.maxTokens) && sampling.maxTokens >= 1, "maxTokens", "must be an integer >= 1");
  if (sampling.seed !== undefined) check(Number.isInteger(sampling.seed), "seed", "must be an integer");
  if (sampling.repeatPenalty !== undefined) check(sampling.repeatPenalty > 0, "repeatPenalty", "must be > 0");
  check(
    sampling.stop.every((s) => typeof s === "string" && s.length > 0),
    "stop",
    "must be non-empty strings",
  );
  return sampling;
}

function check(ok: boolean, param: string, message: string): void {
  if (!ok) throw new LlamaportError("invalid_request", `${param} ${message}`, { param });
}
