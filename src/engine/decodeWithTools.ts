/**
 * Runs one chat generation with tools on a leased sequence through node-llama-cpp's LlamaChat, which spots a call in
 * the model family's own syntax and then generates the function name and its arguments under grammars (so they
 * always parse and match the schema); `required` / a named tool start the turn in that mode (forceFunctionCall).
 * Requests without tools keep the plain decode path (decode.ts).
 */
import type { ChatHistoryItem, ChatWrapper, LlamaChatResponse, LlamaContextSequence, TokenBias } from "node-llama-cpp";
import type { DecodeResult } from "./decode.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import type { Sampling } from "./sampling.ts";
import type { GenerationSink, ToolCallSink } from "./StreamingGeneration.ts";
import { forceFunctionCall } from "./tools/forceFunctionCall.ts";
import { ToolCallStream } from "./tools/ToolCallStream.ts";
import type { ToolPlan } from "./tools/toolPlan.ts";
import type { FinishReason } from "./types.ts";

export interface ToolDecodeInput {
  sequence: LlamaContextSequence;
  /** The model's chat wrapper; forced calls use a view of it. */
  chatWrapper: ChatWrapper;
  history: ChatHistoryItem[];
  plan: ToolPlan;
  sampling: Sampling;
  /** The most tokens to generate, calls included. */
  maxTokens: number;
  /** Tokens this request may fill, prompt included (the penalty windows' "whole context"). */
  window: number;
  /** From `tokenBiasFor` (or a function called before each token, as the replay tests use). */
  tokenBias?: TokenBias | (() => TokenBias);
  signal: AbortSignal;
  sink: Pick<GenerationSink, "text"> & ToolCallSink;
}

export async function decodeWithTools(nlc: NodeLlamaCppModule, input: ToolDecodeInput): Promise<DecodeResult> {
  const { sequence, plan, sink } = input;
  const started = performance.now();
  // LlamaChat reports no callback for the tokens of a function name: the first piece of text or arguments counts.
  let firstOutputAt = 0;
  const calls = new ToolCallStream(sink);
  const chatWrapper = plan.forced ? forceFunctionCall(nlc, input.chatWrapper, plan.functions) : input.chatWrapper;
  const chat = new nlc.LlamaChat({ contextSequence: sequence, chatWrapper, autoDisposeSequence: false });
  // onToken does not fire for the tokens of calls: the sequence's own meter counts every generated token.
  const meterBefore = sequence.tokenMeter.getState();
  try {
    const response = await chat.generateResponse(input.history, {
      ...samplingOptions(input.sampling, input.window),
      maxTokens: input.maxTokens,
      tokenBias: input.tokenBias,
      // Matched on text by LlamaChat, held back while they may still match, and left out of the output.
      customStopTriggers: input.sampling.stop.length > 0 ? input.sampling.stop : undefined,
      signal: input.signal,
      stopOnAbortSignal: true,
      functions: plan.callable,
      documentFunctionParams: true,
      maxParallelFunctionCalls: plan.maxParallelCalls,
      onTextChunk: (text) => {
        if (text.length === 0) return;
        firstOutputAt ||= performance.now();
        sink.text(text);
      },
      onFunctionCallParamsChunk: (chunk) => {
        firstOutputAt ||= performance.now();
        calls.params(chunk);
      },
      onFunctionCall: (call) => {
        firstOutputAt ||= performance.now();
        calls.end(call.functionName, call.params);
      },
    });
    const ended = performance.now();
    firstOutputAt ||= ended;
    const unfinishedToolCall = calls.unfinished;
    return {
      ...finishOf(response),
      ...(unfinishedToolCall && { unfinishedToolCall }),
      completionTokens: sequence.tokenMeter.diff(meterBefore).usedOutputTokens,
      promptMs: firstOutputAt - started,
      generateMs: ended - firstOutputAt,
    };
  } finally {
    chat.dispose({ disposeSequence: false });
  }
}

/** The sampling options in LlamaChat's terms. */
function samplingOptions(sampling: Sampling, contextSize: number) {
  const penalized = sampling.repeatPenalty !== undefined || !!sampling.presencePenalty || !!sampling.frequencyPenalty;
  const window = sampling.repeatLastN === -1 ? contextSize : sampling.repeatLastN;
  return {
    temperature: sampling.temperature,
    topP: sampling.topP,
    topK: sampling.topK,
    minP: sampling.minP,
    seed: sampling.seed,
    xtc: sampling.xtc,
    repeatPenalty:
      penalized && window > 0
        ? {
            penalty: sampling.repeatPenalty ?? 1,
            presencePenalty: sampling.presencePenalty,
            frequencyPenalty: sampling.frequencyPenalty,
            lastTokens: window,
          }
        : (false as const),
    dryRepeatPenalty: sampling.dry && {
      strength: sampling.dry.multiplier,
      base: sampling.dry.base,
      allowedLength: sampling.dry.allowedLength,
      lastTokens: sampling.dry.lastN === undefined || sampling.dry.lastN === -1 ? contextSize : sampling.dry.lastN,
      sequenceBreakers: sampling.dry.sequenceBreakers,
    },
  };
}

function finishOf(response: LlamaChatResponse<never>): { finishReason: FinishReason; stopSequence?: string } {
  const { metadata } = response;
  switch (metadata.stopReason) {
    case "functionCalls":
      return { finishReason: "toolCalls" };
    case "maxTokens":
      return { finishReason: "length" };
    case "abort":
      return { finishReason: "abort" };
    case "customStopTrigger":
      return { finishReason: "stop", stopSequence: metadata.customStopTrigger.filter((part) => typeof part === "string").join("") };
    default:
      return { finishReason: "stop" };
  }
}
