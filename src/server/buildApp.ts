/** Builds the Elysia app for one set of plugin routes plus the host's own routes; the server swaps apps when plugins change. */
import { Elysia } from "elysia";
import type { EngineFacade } from "../engine/types.ts";
import type { PluginStatus, ServedRoute } from "../plugins/PluginHost.ts";
import { runRoute } from "./runRoute.ts";

export interface HostState {
  engine: EngineFacade;
  plugins(): PluginStatus[];
  /** "loading" until llama.cpp is initialised, then "ok"; "error" if it could not start. */
  health(): { status: "loading" | "ok" | "error"; error?: string };
  version: string;
}

/** Paths the host serves itself, reserved from plugins. */
export const hostPaths = ["/", "/health", "/plugins"];

export function buildApp(routes: ServedRoute[], host: HostState) {
  const app = new Elysia()
    .onError(({ code, error }) => {
      if (code === "NOT_FOUND") return json({ error: "not found" }, 404);
      // Only host routes get here (plugin routes catch their own errors); keep the process and the reply sane.
      return json({ error: `internal error: ${(error as Error)?.message ?? String(error)}` }, 500);
    })
    .get("/", () => new Response(`llamaport ${host.version} is running`, { headers: { "content-type": "text/plain" } }))
    .get("/health", () => {
      const health = host.health();
      return json(health, health.status === "ok" ? 200 : 503);
    })
    .get("/plugins", () => json({ plugins: host.plugins() }, 200));
  for (const route of routes) {
    app.route(
      route.method,
      route.path,
      ({ request, params, query }) =>
        runRoute(route, { request, params: params as Record<string, string>, query: query as Record<string, string> }, host.engine),
      // The plugin host parses and checks bodies itself, so errors come out in the plugin's own format.
      { parse: "none" },
    );
  }
  return app;
}

function json(body: unknown, status: number): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}
