/** Turns a problem into an HTTP response in the owning plugin's error format, with a safe fallback if that hook throws. */
import type { Problem } from "../engine/EngineError.ts";
import type { PluginDefinition, PluginLogger } from "../pluginApi/definePlugin.ts";

export function defaultErrorBody(problem: Problem): unknown {
  return { error: { code: problem.code, message: problem.message } };
}

export function renderProblem(problem: Problem, plugin?: PluginDefinition, log?: PluginLogger): Response {
  let body: unknown;
  try {
    body = plugin?.error ? plugin.error(problem) : defaultErrorBody(problem);
  } catch (error) {
    log?.error(`error hook threw: ${(error as Error).message}`);
    body = defaultErrorBody(problem);
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (problem.retryAfter !== undefined) headers["retry-after"] = String(Math.ceil(problem.retryAfter));
  return new Response(JSON.stringify(body), { status: problem.status, headers });
}
