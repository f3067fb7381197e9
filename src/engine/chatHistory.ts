/**
 * Neutral chat messages -> node-llama-cpp's chat history. A model turn holds everything the assistant did before the
 * next user message: its text, its tool calls with their results (from the `tool` messages that follow), and the text
 * it wrote after them; the chat wrapper renders calls and results in the model family's own syntax.
 */
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelResponse } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { ChatMessage } from "./types.ts";

interface OpenCall {
  id: string;
  name: string;
  item: ChatModelFunctionCall;
}

export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  if (messages.length === 0) throw new LlamaportError("invalid_request", "messages must not be empty", { param: "messages" });
  const history: ChatHistoryItem[] = [];
  const open: OpenCall[] = [];
  for (const message of messages) {
    if (message.role === "tool") {
      answer(open, message);
      continue;
    }
    if (message.role !== "assistant") requireResults(open);
    if (message.role === "system") history.push({ type: "system", text: message.content });
    else if (message.role === "user") history.push({ type: "user", text: message.content });
    else addAssistant(history, open, message);
  }
  requireResults(open);
  return history;
}

/** The assistant's text and calls; after tool results it continues the same model turn. */
function addAssistant(history: ChatHistoryItem[], open: OpenCall[], message: ChatMessage): void {
  const last = history.at(-1);
  const tail = last?.type === "model" ? last.response.at(-1) : undefined;
  const continues = typeof tail === "object" && tail.type === "functionCall";
  const item: ChatModelResponse = continues ? (last as ChatModelResponse) : { type: "model", response: [] };
  if (!continues) history.push(item);
  if (message.content) item.response.push(message.content);
  message.toolCalls?.forEach((call, index) => {
    if (open.some((o) => o.id === call.id))
      throw new LlamaportError("invalid_request", `messages: tool call id "${call.id}" is used twice`, { param: "messages" });
    const functionCall: ChatModelFunctionCall = {
      type: "functionCall",
      name: call.name,
      params: call.arguments,
      result: undefined,
      startsNewChunk: index === 0,
    };
    item.response.push(functionCall);
    open.push({ id: call.id, name: call.name, item: functionCall });
  });
}

/** A result answers the call with its id; without an id, the earliest open call of its tool, or the earliest. */
function answer(open: OpenCall[], message: ChatMessage): void {
  const at =
    message.toolCallId !== undefined
      ? open.findIndex((call) => call.id === message.toolCallId)
      : Math.max(
          0,
          open.findIndex((call) => call.name === message.toolName),
        );
  const call = open[at];
  if (at < 0 || !call) {
    const which = message.toolCallId === undefined ? "a tool result" : `the tool result for "${message.toolCallId}"`;
    throw new LlamaportError("invalid_request", `messages: ${which} answers no earlier tool call of the assistant`, { param: "messages" });
  }
  call.item.result = parseMaybeJson(message.content);
  open.splice(at, 1);
}

function requireResults(open: OpenCall[]): void {
  const [first] = open;
  if (first)
    throw new LlamaportError("invalid_request", `messages: tool call "${first.id}" (${first.name}) has no tool result after it`, {
      param: "messages",
    });
}

/** Results are usually JSON; the templates render parsed values (an object, a number) better than a quoted string. */
function parseMaybeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
