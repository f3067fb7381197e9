/**
 * The engine's neutral tool-calling types: tools a request offers, calls the model makes, and the events a generation
 * streams for them. Each protocol plugin maps these to its own wire shapes (OpenAI `tool_calls`, Anthropic `tool_use`
 * blocks, Ollama `tool_calls` with object arguments, Responses `function_call` items).
 * @module
 */
import type { JsonSchema } from "./types.ts";

/** A function the model may call. */
export interface ToolDefinition {
  /** 1-64 characters of `A-Z a-z 0-9 _ . : -`. */
  name: string;
  description?: string;
  /**
   * JSON Schema of the arguments (an object schema). Shape keywords (types, properties, enums, anyOf, $ref, ...) are
   * enforced by a grammar; value constraints (minimum, pattern, ...) are not; every listed property is generated.
   */
  parameters?: JsonSchema;
}

/** A call the model made: its arguments always parse and match the tool's schema. */
export interface ToolCall {
  /** Made by the engine for a new call (`call_…`); in history, whatever id the client sent back. */
  id: string;
  name: string;
  arguments: Record<string, unknown>;
}

/**
 * `auto`: the model decides. `none`: no call is made (the tools are not described to the model). `required`: the
 * model must call one of the tools. `{ name }`: the model must call that tool. Forced calls are generated under a
 * grammar, so even a model that never calls by itself produces a valid one.
 */
export type ToolChoice = "auto" | "none" | "required" | { name: string };

/** A call begins: its id and name are known, its arguments follow as `toolCallArguments` pieces. */
export interface ToolCallStart {
  type: "toolCallStart";
  /** Position among this generation's calls, from 0. */
  index: number;
  id: string;
  name: string;
}

/** A piece of a call's arguments, as JSON text. Concatenated, a call's pieces are its arguments as JSON. */
export interface ToolCallArguments {
  type: "toolCallArguments";
  index: number;
  text: string;
}

/**
 * A call is complete. A call cut short (max tokens, abort) gets no end event: the summary names it as
 * `unfinishedToolCall` instead.
 */
export interface ToolCallEnd {
  type: "toolCallEnd";
  index: number;
  call: ToolCall;
  /** The arguments exactly as streamed in the `toolCallArguments` pieces. */
  argumentsJson: string;
}

/**
 * A call cut short (max tokens, abort) after it began: what was streamed of it. Its arguments are a prefix of JSON
 * (they do not parse), so it is not a `ToolCall`; protocols that carry arguments as text report it as streamed.
 */
export interface UnfinishedToolCall {
  index: number;
  id: string;
  name: string;
  /** The `toolCallArguments` pieces streamed so far, joined. */
  argumentsJson: string;
}

export type ToolCallEvent = ToolCallStart | ToolCallArguments | ToolCallEnd;
