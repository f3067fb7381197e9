/** A generated token as reported to clients: id, text, bytes and, when asked for, its log probability and the top alternatives. */
import type { Token } from "node-llama-cpp";
import type { TokenPieces } from "./TokenPieces.ts";
import type { GeneratedToken, TokenLogprob } from "./types.ts";

/** What a probability of 0 is reported as: JSON has no -Infinity, and OpenAI uses -9999 for "practically impossible". */
export const impossibleLogprob = -9999;

/**
 * `probabilities` is node-llama-cpp's map for this position, most likely first. Alternatives with probability 0 (cut by
 * the grammar or a ban) are left out, as llama-server does.
 */
export function reportToken(
  pieces: TokenPieces,
  token: Token,
  logprobs: number | undefined,
  probabilities: ReadonlyMap<Token, number> | undefined,
): GeneratedToken {
  const piece = pieces.get(token);
  if (logprobs === undefined || !probabilities) return { id: token, text: piece.text, bytes: piece.bytes };
  const top: TokenLogprob[] = [];
  if (logprobs > 0) {
    for (const [alternative, probability] of probabilities) {
      if (top.length >= logprobs || probability <= 0) break;
      const { text, bytes } = pieces.get(alternative);
      top.push({ id: alternative, text, bytes, logprob: Math.log(probability) });
    }
  }
  return { id: token, text: piece.text, bytes: piece.bytes, logprob: logprobOf(probabilities.get(token)), top };
}

function logprobOf(probability: number | undefined): number {
  return probability === undefined || probability <= 0 ? impossibleLogprob : Math.log(probability);
}
