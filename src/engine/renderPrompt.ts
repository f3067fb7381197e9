/** Turns a chat (with or without tools), a raw or a fill-in-the-middle request into prompt tokens, plus the chat template's own stop markers. */
import type { ChatHistoryItem, ChatModelFunctions, ChatWrapper, LlamaText, Token } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type { OffThreadTokenizer } from "./OffThreadTokenizer.ts";
import { renderInfill } from "./renderInfill.ts";
import type { CompletionRequest } from "./types.ts";

export interface RenderedPrompt {
  /** The whole prompt as the sequence will hold it, beginning-of-sequence token included. */
  tokens: Token[];
  /** End-of-turn markers of the chat template that are special tokens: generation ends when one is generated. */
  stopTokens: Token[];
  /** End-of-turn markers of the chat template that are plain text, matched like stop strings (never reported as one). */
  stopTexts: string[];
}

/** What rendering needs besides the model: where to tokenize, and the most tokens the prompt may have. */
export interface PromptBudget {
  tokenizer: OffThreadTokenizer;
  /** Prompt tokens the request's window leaves (see `promptTokenLimit`). */
  limit: number;
}

/** The most tokens a prompt may have in a window of `window` tokens: 10% of it is kept for the answer. */
export function promptTokenLimit(window: number): number {
  return window - Math.max(1, Math.floor(window / 10));
}

/**
 * The prompt for a chat history (see `toChatHistory`), beginning-of-sequence token first when the model wants one.
 * `chars` is the length of the messages' texts, which decides whether it can fit at all and where it is tokenized.
 */
export async function renderChat(
  loaded: LoadedModel,
  history: readonly ChatHistoryItem[],
  budget: PromptBudget,
  chars: number,
): Promise<RenderedPrompt> {
  checkPromptChars(loaded, chars, budget.limit, "messages");
  const state = contextState(loaded.chatWrapper, history);
  return {
    tokens: withBos(loaded, await budget.tokenizer.llamaText(loaded, state.contextText, chars)),
    ...templateStops(loaded, state.stopGenerationTriggers),
  };
}

/**
 * The chat prompt as the template writes it, special tokens as their text (`<s>`, `<|im_start|>`), and the tokens
 * `renderChat` makes of it; with `functions`, those `renderToolChat` makes (which adds no beginning-of-sequence token).
 * Checked as those two check a prompt; tokenized off the event loop when long, with tools too.
 */
export async function renderChatText(
  loaded: LoadedModel,
  history: readonly ChatHistoryItem[],
  functions: ChatModelFunctions | undefined,
  budget: PromptBudget,
  chars: number,
): Promise<{ text: string; tokens: Token[] }> {
  checkPromptChars(loaded, chars, budget.limit, "messages");
  const { contextText } = contextState(loaded.chatWrapper, history, functions);
  const { model } = loaded;
  // Off the event loop when long, tools or not: nothing decodes this prompt afterwards (the same tokens either way).
  const tokens = await budget.tokenizer.llamaText(loaded, contextText, chars);
  let text = "";
  for (const value of contextText.values) {
    if (typeof value === "string") text += value;
    else if (value.toJSON().type === "specialToken") text += model.detokenize(value.tokenize(model.tokenizer), true);
    else text += value.value;
  }
  return { text, tokens: functions ? tokens : withBos(loaded, tokens) };
}

/**
 * The prompt for a chat with tools, with the documentation of `functions`, exactly as LlamaChat evaluates it: the
 * chat wrapper's text, tokenized, and nothing added (a template without a beginning-of-sequence token gets none).
 */
export function renderToolChat(
  loaded: LoadedModel,
  history: readonly ChatHistoryItem[],
  functions: ChatModelFunctions,
  budget: PromptBudget,
  chars: number,
): RenderedPrompt {
  // Tokenized in place: LlamaChat tokenizes this prompt again itself when it decodes, on the main thread; what cannot
  // fit is refused here first.
  checkPromptChars(loaded, chars, budget.limit, "messages");
  const state = contextState(loaded.chatWrapper, history, functions);
  return { tokens: state.contextText.tokenize(loaded.model.tokenizer), ...templateStops(loaded, state.stopGenerationTriggers) };
}

function contextState(chatWrapper: ChatWrapper, history: readonly ChatHistoryItem[], functions?: ChatModelFunctions) {
  // A trailing model turn (a prefill, or calls with their results) is continued; otherwise open a new, empty one.
  const chatHistory = history.at(-1)?.type === "model" ? [...history] : [...history, { type: "model" as const, response: [] }];
  return chatWrapper.generateContextState({ chatHistory, availableFunctions: functions });
}

/**
 * A completion's prompt: fill in the middle with a suffix, as is when raw, else inside the chat template; after the
 * tokens of an earlier exchange when the request continues one.
 */
export async function renderCompletion(loaded: LoadedModel, request: CompletionRequest, budget: PromptBudget): Promise<RenderedPrompt> {
  if (!request.context?.length) return renderPrompt(loaded, request, budget);
  if (request.suffix !== undefined)
    throw new LlamaportError("invalid_request", "context cannot be combined with suffix: filling in the middle starts a new prompt", {
      param: "context",
    });
  const earlier = request.context.map((token) => checkedToken(loaded, token, "context"));
  const next = await renderPrompt(loaded, request, budget);
  const bos = beginningToken(loaded);
  // The earlier exchange already starts the sequence (with its beginning-of-sequence token, if the model has one).
  const rest = bos !== undefined && next.tokens[0] === bos ? next.tokens.slice(1) : next.tokens;
  return { ...next, tokens: [...earlier, ...rest] };
}

function renderPrompt(loaded: LoadedModel, request: CompletionRequest, budget: PromptBudget): Promise<RenderedPrompt> {
  const { prompt } = request;
  if (request.suffix !== undefined) {
    if (typeof prompt !== "string")
      throw new LlamaportError("invalid_request", "prompt must be a text when a suffix is given (fill in the middle)", { param: "prompt" });
    return renderInfill(loaded, prompt, request.suffix, request.files ?? [], budget);
  }
  if (request.raw) return renderRaw(loaded, prompt, budget);
  if (typeof prompt !== "string")
    throw new LlamaportError("invalid_request", "prompt must be a text unless it is raw (token ids skip the chat template)", {
      param: "prompt",
    });
  return renderChat(
    loaded,
    [...(request.system ? [{ type: "system" as const, text: request.system }] : []), { type: "user" as const, text: prompt }],
    budget,
    (request.system?.length ?? 0) + prompt.length,
  );
}

/**
 * A raw prompt, tokenized as llama.cpp's own servers do: special tokens in texts (`<|eot_id|>`, `<s>`) are parsed, so
 * pre-templated prompts work, and SPM vocabularies keep their leading-space token. Token ids are taken as they are; a
 * beginning-of-sequence token is added when the prompt starts with a text (llama-server's rule).
 */
export async function renderRaw(
  loaded: LoadedModel,
  prompt: string | readonly (string | number)[],
  budget: PromptBudget,
): Promise<RenderedPrompt> {
  const parts = typeof prompt === "string" ? [prompt] : prompt;
  let chars = 0;
  for (const part of parts) if (typeof part === "string") chars += part.length;
  checkPromptChars(loaded, chars, budget.limit, "prompt");
  const tokens: Token[] = [];
  for (const part of parts) {
    if (typeof part === "string") for (const token of await budget.tokenizer.text(loaded, part, true)) tokens.push(token);
    else tokens.push(checkedToken(loaded, part, "prompt"));
  }
  if (tokens.length === 0) throw new LlamaportError("invalid_request", "prompt must not be empty", { param: "prompt" });
  return { tokens: typeof parts[0] === "string" ? withBos(loaded, tokens) : tokens, stopTokens: [], stopTexts: [] };
}

/**
 * Refuses a prompt that cannot fit before spending time on it: no token of the vocabulary covers more than
 * `maxTokenChars` characters, so a text longer than `limit` times that needs more than `limit` tokens.
 */
export function checkPromptChars(loaded: LoadedModel, chars: number, limit: number, param: string, what = "prompt"): void {
  if (chars > limit * loaded.maxTokenChars)
    throw new LlamaportError(
      "context_exceeded",
      `${what} too long for the context: ${chars} characters cannot fit in the ${limit} tokens model "${loaded.entry.name}" takes (its longest token is ${loaded.maxTokenChars} characters)`,
      { param },
    );
}

/** The token every prompt starts with, if the model wants one. */
export function beginningToken(loaded: LoadedModel): Token | undefined {
  const { tokens } = loaded.model;
  return tokens.shouldPrependBosToken && tokens.bos != null ? tokens.bos : undefined;
}

/** The tokens, led by the beginning-of-sequence token when the model wants one and they do not start with it. */
export function withBos(loaded: LoadedModel, tokens: Token[]): Token[] {
  const bos = beginningToken(loaded);
  if (bos === undefined || tokens[0] === bos) return tokens;
  tokens.unshift(bos);
  return tokens;
}

/** A token id from a request, checked against the vocabulary. */
function checkedToken(loaded: LoadedModel, token: number, param: string): Token {
  const size = loaded.vocabularySize;
  if (!Number.isInteger(token) || token < 0 || token >= size)
    throw new LlamaportError("invalid_request", `${param} has token id ${token}, the vocabulary has ids 0 to ${size - 1}`, { param });
  return token as Token;
}

/**
 * The template's stop triggers, split by kind. A trigger that starts with a special token (`<|im_end|>`, EOS, gemma's
 * `<end_of_turn>\n`) ends generation at that token; one of plain text (`\n### Human`) is matched on the text.
 */
function templateStops(loaded: LoadedModel, triggers: readonly LlamaText[]): Pick<RenderedPrompt, "stopTokens" | "stopTexts"> {
  const stopTokens: Token[] = [];
  const stopTexts: string[] = [];
  for (const trigger of triggers) {
    const first = trigger.values[0];
    if (first === undefined) continue;
    if (typeof first === "string") {
      if (trigger.values.every((value) => typeof value === "string")) stopTexts.push(trigger.values.join(""));
      continue;
    }
    // A special-token text this vocabulary lacks tokenizes into ordinary pieces: its plain-text twin covers it.
    const token = trigger.tokenize(loaded.model.tokenizer)[0];
    if (token !== undefined && loaded.model.isSpecialToken(token) && !stopTokens.includes(token)) stopTokens.push(token);
  }
  return { stopTokens, stopTexts };
}
