/**
 * Test support: replays a recorded model output through the engine's tool path (decodeWithTools, i.e. LlamaChat) on a
 * small model with a real-size tokenizer. At every sampling step a token bias forces the token that continues the
 * recorded text from what the sequence holds now; where LlamaChat takes over (function name and arguments under
 * grammars, injected text between them) the grammar decides and the replay re-aligns as long as the sequence text
 * stays a prefix of the recording. Touches one node-llama-cpp internal (`_decodeTokens`), so it lives in tests only.
 */
import {
  type ChatHistoryItem,
  type ChatModelFunctions,
  type ChatWrapper,
  LlamaText,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
  TokenBias,
} from "node-llama-cpp";

/** A token bias for `recorded`, and `restore()` to undo the hook on the sequence. */
export function replayBias(
  model: LlamaModel,
  sequence: LlamaContextSequence,
  wrapper: ChatWrapper,
  history: ChatHistoryItem[],
  functions: ChatModelFunctions,
  recorded: string,
) {
  const prompt = wrapper
    .generateContextState({ chatHistory: [...history, { type: "model", response: [] }], availableFunctions: functions })
    .contextText.tokenize(model.tokenizer);
  // Sampling happens inside the decode of a batch, before the batch joins contextTokens: remember the batch too.
  const seq = sequence as unknown as { _decodeTokens: (tokens: Token[], ...rest: unknown[]) => unknown };
  const originalDecode = seq._decodeTokens;
  let decoding: Token[] = [];
  seq._decodeTokens = function (tokens: Token[], ...rest: unknown[]) {
    decoding = tokens;
    return originalDecode.call(this, tokens, ...rest);
  };
  const sample = model.tokenize("a", false, "trimLeadingSpace");
  // LlamaChat 3.21.1 leaves `betweenCalls` out of the sequence while it generates the 2nd+ call: it may be skipped.
  const betweenCalls = LlamaText(wrapper.settings.functions.parallelism?.call.betweenCalls ?? "").toString();
  let endBias: TokenBias | undefined;
  const tokenBias = () => {
    const generated = [...sequence.contextTokens, ...decoding].slice(prompt.length);
    const text = model.detokenize(generated, false, prompt.slice(-8));
    const used = alignedLength(recorded, text, betweenCalls);
    if (used < 0) throw new Error(`the replay went off the recording at ${JSON.stringify(text.slice(-30))}`);
    const rest = recorded.slice(used);
    if (rest.trim() === "") {
      endBias ??= onlyEndOfGeneration(model);
      return endBias;
    }
    // The first token whose text really starts the rest (SPM vocabularies put a lone "▁" before "\n").
    const next = model.tokenize(rest, false, "trimLeadingSpace").find((t) => {
      const piece = model.detokenize([t], false, sample);
      return piece !== "" && rest.startsWith(piece);
    });
    if (next === undefined) throw new Error(`no token starts ${JSON.stringify(rest.slice(0, 10))}`);
    return new TokenBias(model.tokenizer).set(next, { logit: 1000 });
  };
  return {
    tokenBias,
    restore: () => {
      seq._decodeTokens = originalDecode;
    },
  };
}

/** Every token "never" but the end-of-generation ones, which `TokenBias.set` skips. */
function onlyEndOfGeneration(model: LlamaModel): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  const vocabulary = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
  for (let t = 0; t < vocabulary; t++) bias.set(t as Token, "never");
  return bias;
}

/** How much of `recorded` the generated text covers, ignoring whitespace differences; -1 if it went off the recording. */
function alignedLength(recorded: string, generated: string, skippable: string): number {
  let i = 0;
  for (let j = 0; j < generated.length; ) {
    if (i < recorded.length && recorded[i] === generated[j]) {
      i++;
      j++;
    } else if (skippable.trim() !== "" && recorded.startsWith(skippable, i)) i += skippable.length;
    else if (/\s/.test(generated[j]!)) j++;
    else if (i < recorded.length && /\s/.test(recorded[i]!)) i++;
    else return -1;
  }
  return i;
}
