/** Serves one request with a plugin route: parse and check the body, call the handler, turn what it returns into a Response. */
import type { ValueError } from "@sinclair/typebox/errors";
import { LlamaportError, toProblem, type Problem } from "../engine/EngineError.ts";
import type { EngineFacade } from "../engine/types.ts";
import { StreamBody } from "../pluginApi/streams.ts";
import type { ServedRoute } from "../plugins/PluginHost.ts";
import { defaultErrorBody, renderProblem } from "./renderProblem.ts";
import { streamResponse } from "./streamResponse.ts";

export interface RouteRequest {
  request: Request;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
}

export async function runRoute(route: ServedRoute, input: RouteRequest, engine: EngineFacade): Promise<Response> {
  const { plugin, log } = route;
  const fail = (problem: Problem) => renderProblem(problem, plugin, log);
  try {
    const body = await readBody(route, input.request);
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
        errorResponse: fail,
        streamError: (problem) => {
          if (plugin.streamError) return plugin.streamError(problem);
          return plugin.error ? plugin.error(problem) : defaultErrorBody(problem);
        },
      });
    if (result === undefined) return new Response(null, { status: 204 });
    return new Response(JSON.stringify(result), { headers: { "content-type": "application/json" } });
  } catch (error) {
    const problem = toProblem(error);
    if (problem.code === "internal") log.error(`${route.method} ${route.path}: ${(error as Error)?.stack ?? problem.message}`);
    return fail(problem);
  }
}

async function readBody(route: ServedRoute, request: Request): Promise<unknown> {
  if (!route.bodyCheck) return undefined;
  const text = await request.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    throw new LlamaportError(
      "invalid_request",
      text.trim() === "" ? "request body is empty; expected a JSON object" : `malformed JSON in request body: ${(error as Error).message}`,
    );
  }
  if (!route.bodyCheck.Check(body)) {
    const first = route.bodyCheck.Errors(body).First();
    if (first) throw bodyError(first);
  }
  return body;
}

/** A 400 that names the field: `messages[0].role: expected one of "system", "user", "assistant"`. */
function bodyError(error: ValueError): LlamaportError {
  const param = error.path
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
  const options = (error.schema.anyOf as { const?: unknown }[] | undefined)?.map((s) => s.const);
  const expected =
    options && options.every((o) => o !== undefined)
      ? `expected one of ${options.map((o) => JSON.stringify(o)).join(", ")}`
      : error.message.charAt(0).toLowerCase() + error.message.slice(1);
  const got = error.value === undefined ? "" : `, got ${JSON.stringify(error.value)?.slice(0, 60)}`;
  return new LlamaportError("invalid_request", `invalid request body: ${param || "(body)"}: ${expected}${got}`, {
    param: param || undefined,
  });
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}
