/** Turns a chat or a completion request into prompt tokens with the model's template, plus the template's own stop triggers. */
import type { ChatHistoryItem, LlamaText, Token } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type { ChatMessage } from "./types.ts";

export interface RenderedPrompt {
  /** The whole prompt as the sequence will hold it, beginning-of-sequence token included. */
  tokens: Token[];
  /** End-of-turn markers of the chat template (none for raw completions). */
  templateStops: LlamaText[];
}

export function renderChat(loaded: LoadedModel, messages: readonly ChatMessage[]): RenderedPrompt {
  if (messages.length === 0) throw new LlamaportError("invalid_request", "messages must not be empty", { param: "messages" });
  const history: ChatHistoryItem[] = [];
  for (const message of messages) {
    if (message.role === "system") history.push({ type: "system", text: message.content });
    else if (message.role === "user") history.push({ type: "user", text: message.content });
    else history.push({ type: "model", response: [message.content] });
  }
  // A trailing assistant message is a prefill the model continues; otherwise open a new, empty model turn.
  if (messages[messages.length - 1]!.role !== "assistant") history.push({ type: "model", response: [] });
  const state = loaded.chatWrapper.generateContextState({ chatHistory: history });
  return {
    tokens: withBos(loaded, state.contextText.tokenize(loaded.model.tokenizer)),
    templateStops: state.stopGenerationTriggers,
  };
}

/**
 * Tokenized as llama.cpp's own servers do: special tokens in the text (`<|eot_id|>`, `<s>`) are parsed, so
 * pre-templated prompts work, and SPM vocabularies keep their leading-space token.
 */
export function renderRaw(loaded: LoadedModel, prompt: string): RenderedPrompt {
  return { tokens: withBos(loaded, loaded.model.tokenize(prompt, true)), templateStops: [] };
}

/** The token node-llama-cpp puts in front of every completion input, if any. */
export function beginningToken(loaded: LoadedModel): Token | undefined {
  const { tokens } = loaded.model;
  return tokens.shouldPrependBosToken && tokens.bos != null ? tokens.bos : undefined;
}

function withBos(loaded: LoadedModel, tokens: Token[]): Token[] {
  const bos = beginningToken(loaded);
  if (bos === undefined || tokens[0] === bos) return tokens;
  tokens.unshift(bos);
  return tokens;
}
