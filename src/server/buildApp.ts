/** Builds the Elysia app for one set of plugin routes plus the host's own routes; the server swaps apps when plugins change. */
import { Elysia } from "elysia";
import { LlamaportError, type Problem, toProblem } from "../engine/EngineError.ts";
import type { EngineFacade } from "../engine/types.ts";
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import type { PluginStatus, ServedRoute } from "../plugins/PluginHost.ts";
import { renderProblem, wireProblem } from "./renderProblem.ts";
import { type RouteLimits, runRoute } from "./runRoute.ts";

export interface HostState {
  engine: EngineFacade;
  plugins(): PluginStatus[];
  /** "loading" until llama.cpp is initialised, then "ok"; "error" if it could not start. */
  health(): { status: "loading" | "ok" | "error"; error?: string };
  version: string;
  limits: RouteLimits;
  log(level: "info" | "warn" | "error", message: string): void;
}

/** Paths the host serves itself, reserved from plugins. */
export const hostPaths = ["/", "/health", "/plugins"];

export function buildApp(routes: ServedRoute[], host: HostState) {
  const owners = prefixOwners(routes);
  const app = new Elysia()
    // Only requests that reached no plugin handler get here: unknown routes, and faults in the host's own routes.
    .onError(({ code, error, request }) => {
      const path = new URL(request.url).pathname;
      const problem: Problem =
        code === "NOT_FOUND" ? toProblem(new LlamaportError("not_found", `no route for ${request.method} ${path}`)) : toProblem(error);
      if (problem.code === "internal") host.log("error", `${request.method} ${path}: ${(error as Error)?.stack ?? problem.message}`);
      return hostProblem(problem, ownerOf(owners, path));
    })
    .get("/", () => new Response(`llamaport ${host.version} is running`, { headers: { "content-type": "text/plain" } }))
    .get("/health", () => {
      const health = host.health();
      return Response.json(health, { status: health.status === "ok" ? 200 : 503 });
    })
    .get("/plugins", () => Response.json({ plugins: host.plugins() }));
  for (const route of routes) {
    app.route(
      route.method,
      route.path,
      ({ request, params, query }) =>
        runRoute(
          route,
          { request, params: params as Record<string, string>, query: query as Record<string, string> },
          host.engine,
          host.limits,
        ),
      // The host reads and checks bodies itself, so errors come out in the plugin's own format.
      { parse: "none" },
    );
  }
  return app;
}

/** A problem the host answers itself, in the format of the plugin that speaks for the path (if any). */
function hostProblem(problem: Problem, owner: PluginDefinition | undefined): Response {
  return renderProblem(wireProblem(problem, owner?.fields), owner);
}

/** Each plugin's declared prefixes, longest first, so `/v1/messages/x` finds the plugin of `/v1/messages` before that of `/v1`. */
function prefixOwners(routes: ServedRoute[]): [string, PluginDefinition][] {
  const plugins = new Set(routes.map((r) => r.plugin));
  return [...plugins]
    .flatMap((plugin) => (plugin.prefixes ?? []).map((prefix) => [prefix, plugin] as [string, PluginDefinition]))
    .sort((a, b) => b[0].length - a[0].length);
}

function ownerOf(owners: [string, PluginDefinition][], path: string): PluginDefinition | undefined {
  for (const [prefix, plugin] of owners)
    if (path === prefix || path.startsWith(prefix.endsWith("/") ? prefix : `${prefix}/`)) return plugin;
  return undefined;
}
