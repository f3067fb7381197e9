/** A request's token biases (and `ignoreEos`) as one node-llama-cpp TokenBias, end-of-generation tokens included. */
import type { Token, TokenBias } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import type { Sampling } from "./sampling.ts";

/**
 * The biases as logits added to the model's (`-Infinity` bans), or undefined when there are none. Texts bias each of
 * their tokens (tokenized without special tokens, as llama-server does); token ids must be in the vocabulary.
 */
export function tokenBiasFor(nlc: NodeLlamaCppModule, loaded: LoadedModel, sampling: Sampling): TokenBias | undefined {
  if (sampling.tokenBias.length === 0 && !sampling.ignoreEos) return undefined;
  const logits = new Map<Token, number>();
  const vocabularySize = loaded.vocabularySize;
  for (const { token, bias } of sampling.tokenBias) {
    const logit = bias === "never" ? Number.NEGATIVE_INFINITY : bias;
    if (typeof token === "string") {
      for (const t of loaded.model.tokenize(token, false)) logits.set(t, logit);
    } else {
      if (!Number.isInteger(token) || token < 0 || token >= vocabularySize)
        throw new LlamaportError(
          "invalid_request",
          `tokenBias has token id ${token}, but the vocabulary of "${loaded.entry.name}" has ids 0 to ${vocabularySize - 1}`,
          { param: "tokenBias" },
        );
      logits.set(token as Token, logit);
    }
  }
  if (sampling.ignoreEos) for (const token of loaded.endOfGenerationTokens) logits.set(token, Number.NEGATIVE_INFINITY);
  const tokenBias = new nlc.TokenBias(loaded.model.tokenizer);
  // TokenBias.set() silently skips end-of-generation tokens, so `ignoreEos` and a bias on EOS would do nothing through
  // it. Its map holds plain logits (node-llama-cpp hands it to the sampler as is), so it is filled directly.
  const map = (tokenBias as unknown as { _biases: Map<Token, number> })._biases;
  for (const [token, logit] of logits) map.set(token, logit);
  return tokenBias;
}
