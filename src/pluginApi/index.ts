/**
 * The `llamaport` module: everything a protocol plugin may import. Plugins import nothing else, so they work the same
 * from a source checkout and from the compiled binary.
 * @module
 */
export { Type as t } from "@sinclair/typebox";
export type { Static, StaticDecode, TSchema } from "@sinclair/typebox";
export { LlamaportError, toProblem } from "../engine/EngineError.ts";
export type { Problem, ProblemCode, ProblemOptions } from "../engine/EngineError.ts";
export type * from "../engine/types.ts";
export { definePlugin, route } from "./definePlugin.ts";
export type {
  HttpMethod,
  PluginDefinition,
  PluginLogger,
  PluginSetupContext,
  RouteAlias,
  RouteContext,
  RouteDefinition,
  RouteHandler,
  ServerInfo,
} from "./definePlugin.ts";
export { ndjson, SseMessage, StreamBody, sse, sseEvent } from "./streams.ts";
export { ChunkSlot, ChunkTemplate, choiceFrames, frames, NOW, type StreamFormat, slot, TEXT, template } from "./frames.ts";
export { nullable } from "./nullable.ts";
export { type FieldTable, readFields } from "./readFields.ts";
export { takeTurns } from "./takeTurns.ts";
/** Ollama-style durations ("5m", "1h30m", seconds as a number) to milliseconds; negative = -1 (forever). */
export { parseDuration } from "../config/duration.ts";
export { durationField } from "./durationField.ts";

/** Unique ids for responses (`chatcmpl-…`, `msg_…`): a prefix and 24 random base-36 characters. */
export function randomId(prefix = ""): string {
  return prefix + crypto.randomUUID().replaceAll("-", "").slice(0, 24);
}
