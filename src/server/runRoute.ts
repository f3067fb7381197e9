/** Serves one request with a plugin route: read and check the body, call the handler, turn what it returns into a Response. */
import { LlamaportError, type Problem, toProblem } from "../engine/EngineError.ts";
import type { EngineFacade } from "../engine/types.ts";
import { StreamBody } from "../pluginApi/streams.ts";
import type { ServedRoute } from "../plugins/PluginHost.ts";
import { bodyProblem } from "./bodyProblem.ts";
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
}

export async function runRoute(route: ServedRoute, input: RouteRequest, engine: EngineFacade, limits: RouteLimits): Promise<Response> {
  const { plugin, log } = route;
  const wire = (problem: Problem) => wireProblem(problem, route.fields);
  try {
    const body = route.bodyCheck ? decodeBody(route, await readJsonBody(input.request, limits.maxBodyBytes)) : undefined;
    const result = await route.definition.handler({
      body,
      params: input.params,
      query: input.query,
      headers: input.request.headers,
      signal: input.request.signal,
      engine,
      log,
      request: input.request,
    });
    if (result instanceof Response) return result;
    const stream = result instanceof StreamBody ? result : isAsyncIterable(result) ? new StreamBody("sse", result) : undefined;
    if (stream)
      return streamResponse(stream, {
        log,
        errorResponse: (problem) => renderProblem(wire(problem), plugin, log),
        streamError: (problem) => (plugin.streamError ? plugin.streamError(wire(problem)) : errorBody(wire(problem), plugin, log)),
      });
    if (result === undefined) return new Response(null, { status: 204 });
    return new Response(JSON.stringify(result), { headers: { "content-type": "application/json" } });
  } catch (error) {
    const problem = toProblem(error);
    if (problem.code === "internal") log.error(`${route.method} ${route.path}: ${(error as Error)?.stack ?? problem.message}`);
    return renderProblem(wire(problem), plugin, log);
  }
}

/** Checks the body against the route's schema (a 400 naming the first bad field) and decodes it (`nullable` nulls become undefined). */
function decodeBody(route: ServedRoute, body: unknown): unknown {
  const check = route.bodyCheck!;
  if (!check.Check(body)) {
    const first = check.Errors(body).First();
    throw first ? bodyProblem(first) : new LlamaportError("invalid_request", "invalid request body");
  }
  return check.Decode(body);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}
