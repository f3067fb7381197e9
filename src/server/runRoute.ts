/** Serves one request with a plugin route: read and check the body, call the handler, turn what it returns into a Response. */
import { clip, LlamaportError, type Problem, toProblem } from "../engine/EngineError.ts";
import type { RouteDefinition } from "../pluginApi/definePlugin.ts";
import { StreamBody } from "../pluginApi/streams.ts";
import type { ServedRoute } from "../plugins/PluginHost.ts";
import type { HostState } from "./buildApp.ts";
import { bodyProblem } from "./bodyProblem.ts";
import { currentRequestRecord } from "./RequestRecord.ts";
import { readJsonBody } from "./readJsonBody.ts";
import { errorBody, renderProblem, wireProblem } from "./renderProblem.ts";
import { streamResponse } from "./streamResponse.ts";

export interface RouteRequest {
  request: Request;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
}

export interface RouteLimits {
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  /**
   * Called as a plugin request starts; it may refuse it (shutting down, too many requests in flight) by throwing. The
   * function it returns is called once the response is complete: at once for a plain body, or when a stream ends.
   */
  admit?(request: Request): () => void;
}

/** Serves a route with a handler (an alias is served with its target's route, see `buildApp`). */
export async function runRoute(
  route: ServedRoute,
  input: RouteRequest,
  { engine, limits, server }: Pick<HostState, "engine" | "limits" | "server">,
): Promise<Response> {
  const { plugin, log } = route;
  const record = currentRequestRecord();
  if (record) {
    // An alias named itself already (buildApp): the line names the path the client called.
    record.route ??= route.path;
    record.plugin = plugin.name;
  }
  // Problems are rendered in the plugin's format; the request's log line gives the reason.
  const wire = (problem: Problem) => {
    if (record) record.error = problem.message;
    return wireProblem(problem, route.fields);
  };
  let finish: (() => void) | undefined;
  try {
    finish = limits.admit?.(input.request);
    if (route.bodyCheck) checkContentType(input.request);
    const body = route.bodyCheck ? decodeBody(route, await readJsonBody(input.request, limits.maxBodyBytes)) : undefined;
    const result = await (route.definition as RouteDefinition).handler({
      body,
      params: input.params,
      query: input.query,
      headers: input.request.headers,
      signal: input.request.signal,
      engine,
      log,
      request: input.request,
      server,
    });
    if (result instanceof Response) {
      if (!result.body || !finish) return result;
      const response = withEnd(result, finish);
      finish = undefined;
      return response;
    }
    const stream = result instanceof StreamBody ? result : isAsyncIterable(result) ? new StreamBody("sse", result) : undefined;
    if (stream) {
      const ended = finish;
      finish = undefined;
      return streamResponse(stream, {
        log,
        errorResponse: (problem) => renderProblem(wire(problem), plugin, log),
        streamError: (problem) => (plugin.streamError ? plugin.streamError(wire(problem)) : errorBody(wire(problem), plugin, log)),
        ended,
        disconnected: () => {
          if (record) record.disconnected = true;
          else log.info("client disconnected; stream stopped");
        },
      });
    }
    if (result === undefined) return new Response(null, { status: 204 });
    const json = JSON.stringify(result);
    // A function, a symbol: JSON.stringify gives nothing, which would be an empty 200. It is the plugin's bug.
    if (json === undefined) throw new Error(`the handler returned a ${typeof result}, which cannot be sent as JSON`);
    return new Response(json, { headers: { "content-type": "application/json" } });
  } catch (error) {
    const problem = toProblem(error);
    if (problem.code === "internal") log.error(`${route.method} ${route.path}: ${(error as Error)?.stack ?? problem.message}`);
    return renderProblem(wire(problem), plugin, log);
  } finally {
    finish?.();
  }
}

/**
 * JSON routes take JSON. A web page may send any site a "simple" request (text/plain, a form) without asking first,
 * and such a request always carries an Origin header; so with an Origin only a JSON content type is taken. Other
 * clients may send what their HTTP library sends for a string body: `curl -d` sends
 * application/x-www-form-urlencoded (Ollama's own docs use it), fetch in Node and Bun sends text/plain, some none.
 */
function checkContentType(request: Request): void {
  const header = request.headers.get("content-type");
  const type = (header ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === "application/json" || type.endsWith("+json")) return;
  if (!request.headers.has("origin") && (type === "" || type === "application/x-www-form-urlencoded" || type === "text/plain")) return;
  throw new LlamaportError(
    "unsupported_media_type",
    `the request body must be JSON sent with Content-Type: application/json, got ${header ? `"${clip(header)}"` : "no Content-Type"}`,
  );
}

/** Checks the body against the route's schema (a 400 naming the first bad field) and decodes it (`nullable` nulls become undefined). */
function decodeBody(route: ServedRoute, body: unknown): unknown {
  const check = route.bodyCheck!;
  if (!check.Check(body)) {
    const first = check.Errors(body).First();
    throw first ? bodyProblem(first) : new LlamaportError("invalid_request", "invalid request body");
  }
  return route.bodyDecode ? route.bodyDecode(body) : body;
}

/** A plugin's own streamed Response, passed through so that `finish` runs when it ends or the client goes away. */
function withEnd(response: Response, finish: () => void): Response {
  const reader = response.body!.getReader();
  let finished = false;
  const end = () => {
    if (!finished) {
      finished = true;
      finish();
    }
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (done) {
          end();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        end();
        controller.error(error);
      }
    },
    async cancel(reason) {
      end();
      await reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}
