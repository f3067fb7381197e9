/**
 * Runs one generation on a leased sequence: llamaport's own loop over node-llama-cpp's `evaluateWithMetadata`, so the
 * text is detokenized with the prompt as context, log probabilities and token biases (end-of-generation tokens
 * included) are available, and the penalty window counts the prompt, as llama-server does.
 */
import type { LlamaContextSequence, LlamaGrammar, LlamaText, SequenceEvaluateOptions, Token, TokenBias } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import { GenerationOutput } from "./GenerationOutput.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { PromptLookupPredictor, type SpeculationStats } from "./PromptLookup.ts";
import type { RenderedPrompt } from "./renderPrompt.ts";
import { scorePrompt } from "./scorePrompt.ts";
import type { Sampling } from "./sampling.ts";
import type { GenerationSink } from "./StreamingGeneration.ts";
import type { FinishReason, UnfinishedToolCall } from "./types.ts";

export interface DecodeRequest {
  prompt: RenderedPrompt;
  sampling: Sampling;
  grammar?: LlamaGrammar;
  /** From `tokenBiasFor`, made before a sequence is leased (it can fail on a bad token id). */
  tokenBias?: TokenBias;
  /** Prompt tokens the sequence already holds (see `cachedPromptTokens`); only the rest is evaluated. */
  cachedTokens: number;
  /** Tokens this request may fill, prompt included (`LoadedModel.windowFor`); at most the sequence's context size. */
  window: number;
  signal: AbortSignal;
  /** Gets the start event (prompt size, cached tokens, the scored prompt) before any text, then the text. */
  sink: GenerationSink;
}

export interface DecodeResult {
  finishReason: FinishReason;
  /** The client's stop string that ended generation, if one did. */
  stopSequence?: string;
  completionTokens: number;
  promptMs: number;
  generateMs: number;
  /** With `reportContext`: the prompt's tokens and the generated ones. */
  context?: Token[];
  /** What prompt-lookup speculation did, when the request speculated. */
  speculation?: SpeculationStats;
  /** A tool call the generation stopped inside (decodeWithTools). */
  unfinishedToolCall?: UnfinishedToolCall;
}

/** Prompt tokens the sequence already holds; the last prompt token is always evaluated again (it gives the first logits). */
export function cachedPromptTokens(sequence: LlamaContextSequence, prompt: RenderedPrompt): number {
  return Math.min(sequence.compareContextTokens(prompt.tokens).firstDifferentIndex, prompt.tokens.length - 1);
}

export async function decode(
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  sequence: LlamaContextSequence,
  request: DecodeRequest,
): Promise<DecodeResult> {
  const { prompt, sampling, signal, window } = request;
  const started = performance.now();
  const input = await preparePrompt(loaded, sequence, request);
  // Only when asked for: a list of every token is the one thing this loop would otherwise never allocate.
  const context = sampling.reportContext ? prompt.tokens.slice() : undefined;
  if (sampling.maxTokens === 0) {
    await sequence.evaluateWithoutGeneratingNewTokens(input);
    return { finishReason: "length", completionTokens: 0, promptMs: performance.now() - started, generateMs: 0, context };
  }

  // The sequence holds the prompt and all but the last generated token, so this many never shift the context.
  const maxTokens = Math.min(sampling.maxTokens ?? Number.POSITIVE_INFINITY, window - prompt.tokens.length);
  const endTokens = loaded.endOfGenerationTokens;
  const { stopTokens } = prompt;
  const output = outputFor(loaded, request);
  const penalties = PenaltyWindow.for(sampling, prompt.tokens, window);

  let finishReason: FinishReason = "stop";
  let generated = 0;
  let firstTokenAt = 0;
  const predictor = promptLookupFor(sequence, sampling, penalties);
  predictor?.begin(prompt.tokens);
  let speculation: SpeculationStats | undefined;
  try {
    const iterator = sequence.evaluateWithMetadata(
      input,
      { probabilities: sampling.logprobs !== undefined },
      evaluateOptions(nlc, loaded, request, penalties),
    );
    for await (const step of iterator) {
      if (generated === 0) firstTokenAt = performance.now();
      const token = step.token;
      if (endTokens.has(token) || stopTokens.includes(token)) break;
      generated++;
      penalties?.push(token);
      context?.push(token);
      if (!output.token(token, (step as { probabilities?: Map<Token, number> }).probabilities)) break;
      if (generated >= maxTokens) {
        finishReason = "length";
        break;
      }
      if (signal.aborted) {
        finishReason = "abort";
        break;
      }
    }
  } finally {
    speculation = predictor?.end();
  }
  const ended = performance.now();
  output.end();
  if (firstTokenAt === 0) firstTokenAt = ended;
  const stopped = output.stopped;
  return {
    finishReason,
    stopSequence: stopped !== undefined && sampling.stop.includes(stopped) ? stopped : undefined,
    completionTokens: generated,
    promptMs: firstTokenAt - started,
    generateMs: ended - firstTokenAt,
    context,
    speculation,
  };
}

/**
 * The sequence's prompt-lookup predictor, if this request may use it. Not with penalties: node-llama-cpp samples every
 * predicted position with the penalty window as it was before the step (a stale window changes the tokens even at
 * temperature 0), and DRY keeps its own history, into which refuted predictions would go.
 */
function promptLookupFor(sequence: LlamaContextSequence, sampling: Sampling, penalties: PenaltyWindow | undefined) {
  const predictor = sequence.tokenPredictor;
  if (!(predictor instanceof PromptLookupPredictor) || penalties || sampling.dry) return undefined;
  return predictor;
}

/**
 * Makes the sequence hold the prompt's cached prefix (and, when scoring, all but its last token, scored), sends the
 * start event, and returns the tokens left to evaluate.
 */
async function preparePrompt(loaded: LoadedModel, sequence: LlamaContextSequence, request: DecodeRequest): Promise<Token[]> {
  const { prompt, sampling, cachedTokens } = request;
  if (request.signal.aborted) throw new LlamaportError("aborted", "request aborted before decoding started");
  if (cachedTokens < sequence.nextTokenIndex)
    await sequence.eraseContextTokenRanges([{ start: cachedTokens, end: sequence.nextTokenIndex }]);
  const scores = sampling.scorePrompt ? await scorePrompt(sequence, loaded.pieces, prompt.tokens, sampling.logprobs ?? 0) : undefined;
  request.sink.start({ promptTokens: prompt.tokens.length, cachedTokens, ...(scores && { prompt: scores }) });
  return prompt.tokens.slice(scores ? prompt.tokens.length - 1 : cachedTokens);
}

/** Where the generated tokens go: detokenized, through stop strings (the template's and grammar's too), to the sink. */
function outputFor(loaded: LoadedModel, request: DecodeRequest): GenerationOutput {
  const { sampling, prompt, grammar } = request;
  return GenerationOutput.forTokens(
    request.sink,
    { stops: hiddenStops(sampling.stop, prompt.stopTexts, grammar), trimTrailingWhitespace: grammar?.trimWhitespaceSuffix === true },
    { model: loaded.model, prompt: prompt.tokens, pieces: sampling.reportTokens ? loaded.pieces : undefined, logprobs: sampling.logprobs },
  );
}

/** The client's stop strings, then the template's and the grammar's own (JSON grammars stop after four newlines). */
function hiddenStops(client: readonly string[], template: readonly string[], grammar: LlamaGrammar | undefined): string[] {
  const triggers = grammar?.stopGenerationTriggers ?? [];
  if (template.length === 0 && triggers.length === 0) return client as string[];
  const stops = [...client, ...template];
  for (const trigger of triggers) {
    const values: readonly unknown[] =
      typeof trigger === "string" ? [trigger] : Array.isArray(trigger) ? trigger : (trigger as LlamaText).values;
    const text = values.every((value) => typeof value === "string") ? values.join("") : "";
    if (text && !stops.includes(text)) stops.push(text);
  }
  return stops;
}

/** node-llama-cpp's sampling options for one request. Every field is passed: `evaluate` has defaults of its own. */
function evaluateOptions(
  nlc: NodeLlamaCppModule,
  loaded: LoadedModel,
  request: DecodeRequest,
  penalties: PenaltyWindow | undefined,
): SequenceEvaluateOptions {
  const { sampling, grammar } = request;
  return {
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    minP: sampling.minP,
    seed: sampling.seed,
    xtc: sampling.xtc,
    tokenBias: request.tokenBias,
    grammarEvaluationState: grammar ? new nlc.LlamaGrammarEvaluationState({ model: loaded.model, grammar }) : undefined,
    repeatPenalty: penalties && {
      penalty: sampling.repeatPenalty ?? 1,
      presencePenalty: sampling.presencePenalty,
      frequencyPenalty: sampling.frequencyPenalty,
      maxPunishTokens: penalties.size,
      punishTokens: () => penalties.tokens,
    },
    dryRepeatPenalty: sampling.dry && {
      strength: sampling.dry.multiplier,
      base: sampling.dry.base,
      allowedLength: sampling.dry.allowedLength,
      // node-llama-cpp's "whole history" (null) reaches llama.cpp as a window of 0, which disables DRY: pass the context size.
      lastTokens: sampling.dry.lastN === undefined || sampling.dry.lastN === -1 ? request.window : sampling.dry.lastN,
      sequenceBreakers: sampling.dry.sequenceBreakers,
    },
    yieldEogToken: true,
  };
}

/**
 * The tokens the repeat, presence and frequency penalties look at: the last `repeatLastN`, prompt included (llama-server
 * feeds the prompt into its penalty window too; node-llama-cpp's LlamaCompletion counted generated tokens only).
 */
class PenaltyWindow {
  readonly tokens: Token[];

  constructor(
    prompt: readonly Token[],
    readonly size: number,
  ) {
    this.tokens = prompt.slice(-size);
  }

  /** A generated token; node-llama-cpp copies the window before it samples the next one. */
  push(token: Token): void {
    this.tokens.push(token);
    if (this.tokens.length > this.size) this.tokens.shift();
  }

  static for(sampling: Sampling, prompt: readonly Token[], contextSize: number): PenaltyWindow | undefined {
    const penalized = sampling.repeatPenalty !== undefined || !!sampling.presencePenalty || !!sampling.frequencyPenalty;
    if (!penalized || sampling.repeatLastN === 0) return undefined;
    return new PenaltyWindow(prompt, sampling.repeatLastN === -1 ? contextSize : sampling.repeatLastN);
  }
}
