/** Runs one generation on a leased sequence with node-llama-cpp's LlamaCompletion, streaming text into the sink. */
import type { LlamaCompletionGenerationOptions, LlamaGrammar } from "node-llama-cpp";
import type { LoadedModel } from "./LoadedModel.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { beginningToken, type RenderedPrompt } from "./renderPrompt.ts";
import type { Sampling } from "./sampling.ts";
import type { SequenceLease } from "./SequencePool.ts";
import { StopStringFilter } from "./StopStringFilter.ts";
import type { GenerationSink } from "./StreamingGeneration.ts";
import type { FinishReason } from "./types.ts";

export interface DecodeOptions {
  ignoreEos: boolean;
  grammar?: LlamaGrammar;
  signal: AbortSignal;
  sink: GenerationSink;
}

export interface DecodeResult {
  finishReason: FinishReason;
  stopSequence?: string;
  completionTokens: number;
  promptMs: number;
  generateMs: number;
}

/** Prompt tokens the sequence already holds; the last prompt token is always evaluated again (it gives the first logits). */
export function cachedPromptTokens(lease: SequenceLease, prompt: RenderedPrompt): number {
  return Math.min(lease.sequence.compareContextTokens(prompt.tokens).firstDifferentIndex, prompt.tokens.length - 1);
}

export async function decode(
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  lease: SequenceLease,
  prompt: RenderedPrompt,
  sampling: Sampling,
  options: DecodeOptions,
): Promise<DecodeResult> {
  const started = performance.now();
  let firstTokenAt = 0;
  let completionTokens = 0;
  const { sink } = options;
  // Stop strings are matched on text, not tokens; finding one stops decoding through this controller.
  const filter = sampling.stop.length > 0 ? new StopStringFilter(sampling.stop) : undefined;
  const stopper = filter ? new AbortController() : undefined;
  const generation: LlamaCompletionGenerationOptions = {
    ...samplingOptions(nlc, loaded, prompt, sampling, options),
    onTextChunk: filter
      ? (text) => {
          if (filter.stopped) return;
          const safe = filter.push(text);
          if (safe) sink.text(safe);
          if (filter.stopped) stopper?.abort();
        }
      : (text) => sink.text(text),
    onToken: (generated) => {
      if (completionTokens === 0) firstTokenAt = performance.now();
      completionTokens += generated.length;
    },
    signal: stopper ? AbortSignal.any([options.signal, stopper.signal]) : options.signal,
    stopOnAbortSignal: true,
  };

  // LlamaCompletion puts the beginning-of-sequence token back itself.
  const input = beginningToken(loaded) === undefined ? prompt.tokens : prompt.tokens.slice(1);
  const completion = new nlc.LlamaCompletion({ contextSequence: lease.sequence, autoDisposeSequence: false });
  try {
    const { metadata } = await completion.generateCompletionWithMeta(input, generation);
    const ended = performance.now();
    if (firstTokenAt === 0) firstTokenAt = ended;
    if (filter && !filter.stopped) {
      const rest = filter.flush();
      if (rest) sink.text(rest);
    }
    return {
      finishReason: filter?.stopped
        ? "stop"
        : metadata.stopReason === "maxTokens"
          ? "length"
          : metadata.stopReason === "abort"
            ? "abort"
            : "stop",
      stopSequence: filter?.stopped,
      completionTokens,
      promptMs: firstTokenAt - started,
      generateMs: ended - firstTokenAt,
    };
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}

/** node-llama-cpp's sampling and constraint options for one request. */
function samplingOptions(
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  prompt: RenderedPrompt,
  sampling: Sampling,
  options: DecodeOptions,
): LlamaCompletionGenerationOptions {
  const penalized = sampling.repeatPenalty !== undefined || !!sampling.presencePenalty || !!sampling.frequencyPenalty;
  return {
    // Without a limit, generation ends when the context is full instead of shifting it forever.
    maxTokens: sampling.maxTokens ?? Math.max(1, loaded.contextSize - prompt.tokens.length),
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    minP: sampling.minP,
    seed: sampling.seed,
    repeatPenalty: penalized
      ? {
          penalty: sampling.repeatPenalty ?? 1,
          presencePenalty: sampling.presencePenalty,
          frequencyPenalty: sampling.frequencyPenalty,
          lastTokens: 64,
        }
      : false,
    tokenBias: options.ignoreEos ? loaded.noEosBias(nlc) : undefined,
    customStopTriggers: prompt.templateStops.length ? prompt.templateStops : undefined,
    grammar: options.grammar,
  };
}
