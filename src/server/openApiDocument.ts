/**
 * `GET /openapi.json`: an OpenAPI 3.1 document of the routes served now, plugins included, rebuilt whenever the plugin
 * set changes. Request bodies are the routes' TypeBox schemas, which are JSON Schema (OpenAPI 3.1's schema dialect).
 */
import type { RouteDefinition } from "../pluginApi/definePlugin.ts";
import type { ServedRoute } from "../plugins/PluginHost.ts";
import { describeCondition } from "../plugins/checkPluginDefinition.ts";
import { aliasTargets } from "../plugins/routePath.ts";

type JsonObject = Record<string, unknown>;

export interface OpenApiOptions {
  version: string;
  /** Whether API keys are configured now (they can change with models.yaml). */
  requiresKey(): boolean;
}

/** The host's own routes; all but `/health` need the key when keys are set. */
const hostOperations: Record<string, { summary: string; content: string }> = {
  "/health": { summary: 'Readiness: 200 {"status":"ok"}, or 503 while loading, failed or stopping', content: "application/json" },
  "/plugins": { summary: "Each plugin's version, routes, state and last load error", content: "application/json" },
  "/metrics": { summary: "Prometheus metrics (text exposition format)", content: "text/plain" },
  "/openapi.json": { summary: "This document: every route served now", content: "application/json" },
};

export class OpenApiDocument {
  private paths: JsonObject = {};

  constructor(private readonly options: OpenApiOptions) {
    this.update([]);
  }

  /** The plugin set changed: describe its routes from now on. */
  update(routes: readonly ServedRoute[]): void {
    const paths: JsonObject = {};
    for (const [path, host] of Object.entries(hostOperations)) {
      paths[path] = {
        get: {
          operationId: `llamaport.get${operationName(path)}`,
          tags: ["llamaport"],
          summary: host.summary,
          ...(path === "/health" && { security: [] }),
          responses: { default: { description: host.summary, content: { [host.content]: {} } } },
        },
      };
    }
    for (const group of groupByOperation(routes)) {
      const path = openApiPath(group[0]!.path);
      paths[path] = { ...(paths[path] as JsonObject | undefined), [group[0]!.method.toLowerCase()]: operation(group, routes) };
    }
    this.paths = paths;
  }

  /** The document as served now (API key security only while keys are configured). */
  current(): JsonObject {
    const secured = this.options.requiresKey();
    return {
      openapi: "3.1.0",
      info: {
        title: "llamaport",
        version: this.options.version,
        description: "A local LLM server: the routes of the protocol plugins loaded now, and the host's own.",
      },
      paths: this.paths,
      ...(secured && {
        components: {
          securitySchemes: {
            bearer: { type: "http", scheme: "bearer", description: "Authorization: Bearer <API key>" },
            apiKey: { type: "apiKey", in: "header", name: "x-api-key" },
          },
        },
        security: [{ bearer: [] }, { apiKey: [] }],
      }),
    };
  }
}

/** Routes that share a method and path (served by header conditions) make one operation. */
function groupByOperation(routes: readonly ServedRoute[]): ServedRoute[][] {
  const groups = new Map<string, ServedRoute[]>();
  for (const route of routes) {
    const key = `${route.method} ${openApiPath(route.path)}`;
    groups.set(key, [...(groups.get(key) ?? []), route]);
  }
  return [...groups.values()];
}

/**
 * One operation: the route without a header condition (or the first), with its body schema; routes that serve only
 * requests with a header are named in the description and as header parameters. An alias (`sameAs`) documents the
 * body of the route that answers it now, and names that route.
 */
function operation(group: ServedRoute[], routes: readonly ServedRoute[]): JsonObject {
  const main = group.find((r) => r.header === undefined) ?? group[0]!;
  const target = main.sameAs === undefined ? main : documentedTarget(main, routes);
  const conditional = group.filter((r) => r !== main && r.header !== undefined);
  const params = [...main.path.matchAll(/:([^/]+)/g)].map((match) => ({
    name: match[1],
    in: "path",
    required: true,
    schema: { type: "string" },
  }));
  const headers = [...new Set(conditional.map((r) => r.header!))].map((name) => ({
    name,
    in: "header",
    required: false,
    schema: { type: "string" },
    description: "Requests with this header are served by another plugin (see the description)",
  }));
  const variants = conditional.map(
    (r) => `Requests with \`${describeCondition(r.header!, r.headerIncludes)}\` are served by plugin "${r.plugin.name}".`,
  );
  const summary = main.header === undefined ? undefined : `Requests with ${describeCondition(main.header, main.headerIncludes)}`;
  const body = target && (target.definition as RouteDefinition).body;
  const served = `Served by plugin "${main.plugin.name}"${main.plugin.version ? ` ${main.plugin.version}` : ""}`;
  return {
    operationId: `${main.plugin.name}.${main.method.toLowerCase()}${operationName(main.path)}`,
    tags: [main.plugin.name],
    ...(summary && { summary }),
    description: [main.sameAs === undefined ? `${served}.` : `${served}: ${describeAlias(main, target)}`, ...variants].join(" "),
    ...(params.length + headers.length > 0 && { parameters: [...params, ...headers] }),
    ...(body !== undefined && {
      requestBody: { required: true, content: { "application/json": { schema: jsonSchema(body) } } },
    }),
    responses: {
      default: {
        description: target
          ? `The plugin's answer; errors in its error format (see plugin "${target.plugin.name}")`
          : `404 in plugin "${main.plugin.name}"'s error format while no route serves ${main.method} ${main.sameAs}`,
      },
    },
  };
}

/** The route that answers an alias for most requests (the one without a header condition), as the host dispatches it. */
function documentedTarget(alias: ServedRoute, routes: readonly ServedRoute[]): ServedRoute | undefined {
  const targets = aliasTargets(alias, routes);
  return targets.find((r) => r.header === undefined) ?? targets[0];
}

function describeAlias(alias: ServedRoute, target: ServedRoute | undefined): string {
  const same = `${alias.method} ${alias.sameAs}`;
  return target
    ? `the same as ${same} (plugin "${target.plugin.name}"), with that route's body and answers.`
    : `the same as ${same}, which no plugin serves now (answers 404).`;
}

/** `/v1/models/:model` -> `/v1/models/{model}` */
function openApiPath(path: string): string {
  return path.replace(/:([^/]+)/g, "{$1}");
}

/** `/v1/chat/completions` -> `V1ChatCompletions`, for operation ids. */
function operationName(path: string): string {
  const words = path.split(/[^A-Za-z0-9]+/).filter(Boolean);
  return words.length === 0 ? "Root" : words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("");
}

/** A TypeBox schema as plain JSON Schema: its symbol keys (kind, transforms, optional marks) are not JSON and drop out. */
function jsonSchema(schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema));
}
