/** Turns a problem into an HTTP response in the owning plugin's error format, with a safe fallback if that hook throws. */
import type { Problem } from "../engine/EngineError.ts";
import type { PluginDefinition, PluginLogger } from "../pluginApi/definePlugin.ts";

/** The body when no plugin owns the path, or the plugin's own hook failed. */
export function defaultErrorBody(problem: Problem): unknown {
  return { error: { code: problem.code, message: problem.message } };
}

/**
 * The problem as the plugin's clients name things: a neutral field (`maxTokens`) becomes the wire name (`max_tokens`).
 * An entry with `[]` renames paths inside a list too: `{"tools[].parameters": "tools[].function.parameters"}` turns
 * `tools[2].parameters.properties.x` into `tools[2].function.parameters.properties.x`.
 */
export function wireProblem(problem: Problem, fields: Readonly<Record<string, string>> | undefined): Problem {
  const wire = problem.param === undefined || fields === undefined ? undefined : wireName(problem.param, fields);
  if (wire === undefined || problem.param === undefined) return problem;
  const message = problem.message.startsWith(problem.param) ? wire + problem.message.slice(problem.param.length) : problem.message;
  return { ...problem, param: wire, message };
}

function wireName(param: string, fields: Readonly<Record<string, string>>): string | undefined {
  const exact = fields[param];
  if (exact !== undefined || !param.includes("[")) return exact;
  for (const [neutral, wire] of Object.entries(fields)) {
    if (!neutral.includes("[]")) continue;
    const escaped = neutral.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replaceAll("\\[\\]", "\\[(\\d+)\\]");
    const match = new RegExp(`^${escaped}(?=$|[.[])`).exec(param);
    if (!match) continue;
    let index = 1;
    return wire.replaceAll("[]", () => `[${match[index++]}]`) + param.slice(match[0].length);
  }
  return undefined;
}

/** The plugin's error body for a problem (its `error` hook, or the default when it has none or it throws). */
export function errorBody(problem: Problem, plugin: PluginDefinition | undefined, log?: PluginLogger): unknown {
  if (!plugin?.error) return defaultErrorBody(problem);
  try {
    return plugin.error(problem);
  } catch (error) {
    log?.error(`error hook threw: ${(error as Error).message}`);
    return defaultErrorBody(problem);
  }
}

export function renderProblem(problem: Problem, plugin?: PluginDefinition, log?: PluginLogger): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (problem.retryAfter !== undefined) headers["retry-after"] = String(Math.ceil(problem.retryAfter));
  return new Response(JSON.stringify(errorBody(problem, plugin, log)), { status: problem.status, headers });
}
