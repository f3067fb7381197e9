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

export interface DecodeResult {
  finishReason: FinishReason;
  stopSequence?: string;
  cachedTokens: number;
  completionTokens: number;
  promptMs: number;
  generateMs: number;
}

export async function decode(
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  lease: SequenceLease,
  prompt: RenderedPrompt,
  sampling: Sampling,
  options: { ignoreEos: boolean; grammar?: LlamaGrammar; signal: AbortSignal; sink: GenerationSink },
): Promise<DecodeResult> {
  const { sequence } = lease;
  const { tokens } = prompt;
  // The last prompt token is always evaluated again (it produces the first logits), so at most length - 1 are reused.
  const cachedTokens = Math.min(sequence.compareContextTokens(tokens).firstDifferentIndex, tokens.length - 1);
  // LlamaCompletion puts the beginning-of-sequence token back itself.
  const input = beginningToken(loaded) === undefined ? tokens : tokens.slice(1);

  const started = performance.now();
  let firstTokenAt = 0;
  let completionTokens = 0;
  const sink = options.sink;
  // Stop strings are matched on text, not tokens; finding one stops decoding through this controller.
  const filter = sampling.stop.length > 0 ? new StopStringFilter(sampling.stop) : undefined;
  const stopper = filter ? new AbortController() : undefined;
  const generation: LlamaCompletionGenerationOptions = {
    onTextChunk: filter
      ? (text) => {
          if (filter.stopped) return;
          const safe = filter.push(text);
          if (safe) sink.text(safe);
          if (filter.stopped) stopper!.abort();
        }
      : (text) => sink.text(text),
    onToken: (generated) => {
      if (completionTokens === 0) firstTokenAt = performance.now();
      completionTokens += generated.length;
    },
    signal: stopper ? AbortSignal.any([options.signal, stopper.signal]) : options.signal,
    stopOnAbortSignal: true,
    // Without a limit, generation ends when the context is full instead of shifting it forever.
    maxTokens: sampling.maxTokens ?? Math.max(1, loaded.contextSize - tokens.length),
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    minP: sampling.minP,
    seed: sampling.seed,
    repeatPenalty:
      sampling.repeatPenalty === undefined && !sampling.presencePenalty && !sampling.frequencyPenalty
        ? false
        : {
            penalty: sampling.repeatPenalty ?? 1,
            presencePenalty: sampling.presencePenalty,
            frequencyPenalty: sampling.frequencyPenalty,
            lastTokens: 64,
          },
    tokenBias: options.ignoreEos ? loaded.noEosBias(nlc) : undefined,
    customStopTriggers: prompt.templateStops.length ? prompt.templateStops : undefined,
    grammar: options.grammar,
  };

  const completion = new nlc.LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  try {
    const { metadata } = await completion.generateCompletionWithMeta(input, generation);
    const ended = performance.now();
    if (firstTokenAt === 0) firstTokenAt = ended;
    let finishReason: FinishReason = "stop";
    if (filter?.stopped) finishReason = "stop";
    else if (metadata.stopReason === "maxTokens") finishReason = "length";
    else if (metadata.stopReason === "abort") finishReason = "abort";
    if (filter && !filter.stopped) {
      const rest = filter.flush();
      if (rest) sink.text(rest);
    }
    return {
      finishReason,
      stopSequence: filter?.stopped,
      cachedTokens,
      completionTokens,
      promptMs: firstTokenAt - started,
      generateMs: ended - firstTokenAt,
    };
  } finally {
    completion.dispose({ disposeSequence: false });
  }
}
