/** Sends a plugin's stream: waits for the first item (so early errors are plain error responses), then frames items as SSE or NDJSON. */
import { toProblem, type Problem } from "../engine/EngineError.ts";
import type { PluginLogger } from "../pluginApi/definePlugin.ts";
import { SseMessage, type StreamBody } from "../pluginApi/streams.ts";

const encoder = new TextEncoder();

const contentTypes = {
  sse: "text/event-stream",
  ndjson: "application/x-ndjson",
} as const;

/**
 * Encodes one item. A string is taken as already serialized (plugins pre-build their per-token JSON); anything else is
 * JSON-encoded. An SSE data string with line breaks goes out as several `data:` lines, which the client joins again.
 */
function frame(framing: StreamBody["framing"], item: unknown): Uint8Array {
  if (framing === "ndjson") return encoder.encode(`${typeof item === "string" ? item : JSON.stringify(item)}\n`);
  if (item instanceof SseMessage) {
    const data = sseData(typeof item.data === "string" ? item.data : JSON.stringify(item.data));
    return encoder.encode(item.event ? `event: ${item.event}\n${data}\n` : `${data}\n`);
  }
  return encoder.encode(`${sseData(typeof item === "string" ? item : JSON.stringify(item))}\n`);
}

const lineBreak = /\r\n|\r|\n/;

/** `data: ` lines for a payload; JSON text never holds a raw line break, so the common case is one line. */
function sseData(data: string): string {
  if (!lineBreak.test(data)) return `data: ${data}\n`;
  let out = "";
  for (const line of data.split(lineBreak)) out += `data: ${line}\n`;
  return out;
}

export interface StreamHooks {
  /** This protocol's last item for a stream that failed after it started. */
  streamError(problem: Problem): unknown;
  /** Error response for a stream that failed before its first item. */
  errorResponse(problem: Problem): Response;
  log: PluginLogger;
  /** Called once when the response is complete: the stream ended or failed, the client went away, or it never started. */
  ended?(): void;
  /** The client went away before the end (an ordinary event; the request's log line says so). Called before `ended`. */
  disconnected?(): void;
}

export async function streamResponse(body: StreamBody, hooks: StreamHooks): Promise<Response> {
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    hooks.ended?.();
  };
  const iterator = body.source[Symbol.asyncIterator]();
  let first: IteratorResult<unknown>;
  try {
    first = await iterator.next();
  } catch (error) {
    end();
    return hooks.errorResponse(logged(error, hooks.log));
  }
  let pending: IteratorResult<unknown> | undefined = first;
  // Closed by us (done or failed), or cancelled by the client: either way nothing more may be enqueued.
  let closed = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let item: Uint8Array;
      try {
        const result = pending ?? (await iterator.next());
        pending = undefined;
        if (closed) return; // the client left while we waited for the next item
        if (result.done) {
          closed = true;
          end();
          controller.close();
          return;
        }
        item = frame(body.framing, result.value);
      } catch (error) {
        if (closed) return;
        // Headers are gone: end the stream with the protocol's error item instead of cutting the connection.
        closed = true;
        end();
        try {
          controller.enqueue(frame(body.framing, hooks.streamError(logged(error, hooks.log))));
        } catch (hookError) {
          hooks.log.error(`streamError hook threw: ${(hookError as Error).message}`);
        }
        controller.close();
        return;
      }
      controller.enqueue(item);
    },
    async cancel() {
      if (closed) return;
      closed = true;
      hooks.disconnected?.();
      end();
      // Returning the iterator runs the plugin's `finally` and stops the engine.
      await iterator.return?.();
    },
  });
  return new Response(stream, {
    status: 200,
    headers: {
      "content-type": contentTypes[body.framing],
      "cache-control": "no-cache",
      ...(body.framing === "sse" ? { connection: "keep-alive" } : {}),
      ...body.headers,
    },
  });
}

function logged(error: unknown, log: PluginLogger): Problem {
  const problem = toProblem(error);
  if (problem.code === "internal") log.error(`${(error as Error)?.stack ?? problem.message}`);
  return problem;
}
