/** Streaming response bodies a route handler can return: Server-Sent Events or newline-delimited JSON. */

/** One SSE message with an event name; plain items in an `sse()` stream are sent as `data:` only. */
export class SseMessage {
  constructor(
    readonly event: string | undefined,
    /** A string is sent as is; anything else as JSON. */
    readonly data: unknown,
  ) {}
}

/** A streamed body; the host frames each item, sends the status only once the first item exists, and stops on disconnect. */
export class StreamBody {
  constructor(
    readonly framing: "sse" | "ndjson",
    readonly source: AsyncIterable<unknown>,
    readonly headers: Record<string, string> = {},
  ) {}
}

/**
 * Stream items as Server-Sent Events (`text/event-stream`). Yield objects (sent as `data: <json>`), strings (sent as
 * `data: <string>`, so a pre-serialized JSON string costs nothing more) or `sseEvent(name, data)` for named events.
 * @example return sse(async function* () { yield { hello: "world" }; yield sseEvent("done", "[DONE]"); }());
 */
export function sse(source: AsyncIterable<unknown>, headers?: Record<string, string>): StreamBody {
  return new StreamBody("sse", source, headers);
}

/** Stream items as newline-delimited JSON (`application/x-ndjson`): objects are serialized, strings sent as already-serialized lines. */
export function ndjson(source: AsyncIterable<unknown>, headers?: Record<string, string>): StreamBody {
  return new StreamBody("ndjson", source, headers);
}

/** A named SSE event, e.g. `sseEvent("message_stop", {type: "message_stop"})`. */
export function sseEvent(event: string, data: unknown): SseMessage {
  return new SseMessage(event, data);
}
