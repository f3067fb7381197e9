/** The log probability of each prompt token given the ones before it (OpenAI's `echo` with `logprobs`), from one batch. */
import type { ControlledEvaluateInputItem, LlamaContextSequence, Token } from "node-llama-cpp";
import { reportToken } from "./reportToken.ts";
import type { TokenPieces } from "./TokenPieces.ts";
import type { GeneratedToken } from "./types.ts";

/**
 * Evaluates all but the last prompt token into the (empty) sequence, asking for the full distribution after each one:
 * token i is scored by the distribution after token i - 1, the raw softmax (temperature 0: no bias, penalties or
 * truncation). The first token has nothing before it, so no log probability. The last prompt token is left for the
 * decode loop, which evaluates it to sample the first generated token.
 */
export async function scorePrompt(
  sequence: LlamaContextSequence,
  pieces: TokenPieces,
  prompt: readonly Token[],
  alternatives: number,
): Promise<GeneratedToken[]> {
  const input: ControlledEvaluateInputItem[] = prompt
    .slice(0, -1)
    .map((token) => [token, { generateNext: { probabilities: true, options: { temperature: 0 } } }]);
  const results = input.length === 0 ? [] : await sequence.controlledEvaluate(input);
  return prompt.map((token, index) => {
    if (index === 0) {
      const { text, bytes } = pieces.get(token);
      return { id: token, text, bytes };
    }
    return reportToken(pieces, token, alternatives, results[index - 1]?.next?.probabilities);
  });
}
