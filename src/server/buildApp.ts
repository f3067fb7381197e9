/** Builds the Elysia app for one set of plugin routes plus the host's own routes; the server swaps apps when plugins change. */
import { Elysia } from "elysia";
import { LlamaportError, type Problem, toProblem } from "../engine/EngineError.ts";
import type { EngineFacade } from "../engine/types.ts";
import type { PluginDefinition, ServerInfo } from "../pluginApi/definePlugin.ts";
import type { PluginStatus, ServedRoute } from "../plugins/PluginHost.ts";
import { aliasTargets } from "../plugins/routePath.ts";
import { renderProblem, wireProblem } from "./renderProblem.ts";
import { currentRequestRecord } from "./RequestRecord.ts";
import { type RouteLimits, type RouteRequest, runRoute } from "./runRoute.ts";

export interface HostState {
  engine: EngineFacade;
  plugins(): PluginStatus[];
  /** "loading" until llama.cpp is initialised, then "ok"; "error" if it could not start; "stopping" once shutting down. */
  health(): { status: "loading" | "ok" | "error" | "stopping"; error?: string };
  server: ServerInfo;
  limits: RouteLimits;
  /** `GET /metrics`: Prometheus' text format. */
  metrics(): Promise<Response>;
  /** `GET /openapi.json`: the routes served now. */
  openApi(): unknown;
  log(level: "info" | "warn" | "error", message: string): void;
}

/** Paths the host serves itself, reserved from plugins. (`/` is the host's only while no plugin serves it.) */
export const hostPaths = ["/health", "/plugins", "/metrics", "/openapi.json"];

export function buildApp(routes: ServedRoute[], host: HostState) {
  const renderFor = problemRenderer(routes);
  // Elysia finds the path at the first "/" after character 11 by default, so a Host shorter than 4 characters
  // (`Host: llm`) made every route 404; we serve plain http only, so the path starts after "http://" and the host.
  const app = new Elysia({ handler: { standardHostname: false } })
    // Only requests that reached no plugin handler get here: unknown routes, and faults in the host's own routes.
    .onError(({ code, error, request }) => {
      const path = new URL(request.url).pathname;
      const problem: Problem =
        code === "NOT_FOUND" ? toProblem(new LlamaportError("not_found", `no route for ${request.method} ${path}`)) : toProblem(error);
      const record = currentRequestRecord();
      if (record) record.error = problem.message;
      if (problem.code === "internal") host.log("error", `${request.method} ${path}: ${(error as Error)?.stack ?? problem.message}`);
      return renderFor(problem, path, request.headers);
    })
    .get("/health", () => healthResponse(host.health()))
    .get("/plugins", () => Response.json({ plugins: host.plugins() }))
    .get("/metrics", () => host.metrics())
    .get("/openapi.json", () => Response.json(host.openApi()));
  // A plugin (Ollama's) may answer `/` the way its clients probe a server; otherwise the host says what it is.
  const hostRoot = () => new Response(`llamaport ${host.server.version} is running`, { headers: { "content-type": "text/plain" } });
  if (!routes.some((r) => r.method === "GET" && r.path === "/")) app.get("/", hostRoot);
  // An alias (`sameAs`) is served by whatever serves its target in this route set, resolved when the set changes.
  const targets = new Map(routes.filter((r) => r.sameAs !== undefined).map((alias) => [alias, aliasTargets(alias, routes)]));
  const dispatch = (group: ServedRoute[], matched: string, input: RouteRequest): Response | Promise<Response> => {
    const route = routeFor(group, input.request.headers);
    const path = new URL(input.request.url).pathname;
    // Only routes with a condition (the web page, for browsers) serve `/`: the rest get the host's own answer.
    if (!route && path === "/" && group[0]!.method === "GET") return hostRoot();
    if (!route)
      return renderFor(
        toProblem(new LlamaportError("not_found", `no route for ${input.request.method} ${path}`)),
        path,
        input.request.headers,
      );
    const named = { ...input, params: renameParams(input.params, matched, route.path) };
    if (route.sameAs === undefined) return runRoute(route, named, host);
    // The request's log line and metrics name the alias the client called (its target's route serves it).
    const record = currentRequestRecord();
    if (record) record.route = route.path;
    const served = targets.get(route) ?? [];
    if (served.length === 0) {
      const problem = toProblem(
        new LlamaportError("not_found", `no route serves ${route.method} ${route.sameAs} (which ${route.path} answers as)`),
      );
      if (record) {
        record.plugin = route.plugin.name;
        record.error = problem.message;
      }
      return renderProblem(wireProblem(problem, route.plugin.fields), route.plugin);
    }
    return dispatch(served, route.path, named);
  };
  for (const group of routeGroups(routes)) {
    const [first] = group;
    app.route(
      first!.method,
      first!.path,
      ({ request, params, query }) =>
        dispatch(group, first!.path, { request, params: params as Record<string, string>, query: query as Record<string, string> }),
      // The host reads and checks bodies itself, so errors come out in the plugin's own format.
      { parse: "none" },
    );
  }
  return app;
}

/** Routes by method and path (parameter names aside): several plugins may serve one path for requests with different headers. */
function routeGroups(routes: ServedRoute[]): ServedRoute[][] {
  const groups = new Map<string, ServedRoute[]>();
  for (const route of routes) {
    const key = `${route.method} ${route.path.replace(/:[^/]+/g, ":")}`;
    groups.set(key, [...(groups.get(key) ?? []), route]);
  }
  return [...groups.values()];
}

/** The route for a request: the first whose condition it meets, else the one without a condition. */
function routeFor(group: ServedRoute[], headers: Headers): ServedRoute | undefined {
  return group.find((r) => r.header !== undefined && meets(r, headers)) ?? group.find((r) => r.header === undefined);
}

/** A route's `when`: the header is there, and holds the text asked for (in any letter case) when one is. */
function meets(route: ServedRoute, headers: Headers): boolean {
  const value = headers.get(route.header!);
  return value !== null && (route.headerIncludes === undefined || value.toLowerCase().includes(route.headerIncludes));
}

/** Parameters as the chosen route names them: the router matched the group's first path, whose names may differ. */
function renameParams(params: Record<string, string>, matched: string, wanted: string): Record<string, string> {
  if (matched === wanted) return params;
  const names = (path: string) =>
    path
      .split("/")
      .filter((part) => part.startsWith(":"))
      .map((part) => part.slice(1));
  const from = names(matched);
  return Object.fromEntries(names(wanted).map((name, index) => [name, params[from[index]!] ?? ""]));
}

/**
 * Renders problems the host answers itself (unknown route, refused access, shutting down) in the format of the plugin
 * that speaks for the request: the plugin of a route with that path (the one whose header the request carries, when
 * several share it), else the one with the longest matching prefix.
 */
export function problemRenderer(routes: ServedRoute[]): (problem: Problem, path: string, headers: Headers) => Response {
  const owners = prefixOwners(routes);
  const patterns = routes.map((route) => ({ pattern: pathPattern(route.path), route }));
  return (problem, path, headers) => {
    const matching = patterns.filter(({ pattern }) => pattern.test(path)).map(({ route }) => route);
    const owner = (matching.length > 0 ? routeFor(matching, headers)?.plugin : undefined) ?? ownerOf(owners, path);
    return renderProblem(wireProblem(problem, owner?.fields), owner);
  };
}

/** `/v1/models/:model` -> /^\/v1\/models\/[^/]+$/ */
function pathPattern(path: string): RegExp {
  const source = path
    .split("/")
    .map((part) => (part.startsWith(":") ? "[^/]+" : part === "*" ? ".*" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${source}$`);
}

/**
 * `{"status": "ok"}` once llama.cpp is ready; before that, if it failed, or while shutting down, a 503 whose body also
 * carries the error object llama-server sends then (`unavailable_error`), so clients of either kind read it.
 */
function healthResponse(health: ReturnType<HostState["health"]>): Response {
  if (health.status === "ok") return Response.json({ status: "ok" });
  const message =
    health.status === "loading"
      ? "Loading model"
      : health.status === "stopping"
        ? "Server is shutting down"
        : (health.error ?? "engine failed to start");
  return Response.json({ status: health.status, error: { code: 503, message, type: "unavailable_error" } }, { status: 503 });
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
