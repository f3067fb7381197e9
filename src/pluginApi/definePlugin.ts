/** The shape of a protocol plugin: a plain object with a name, routes and optional hooks. `definePlugin` only adds types. */
import type { StaticDecode, TSchema } from "@sinclair/typebox";
import type { Problem } from "../engine/EngineError.ts";
import type { EngineFacade } from "../engine/types.ts";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD";

/** Log lines from a plugin are prefixed with its name. */
export interface PluginLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** What the server says about itself, for protocols that report it. */
export interface ServerInfo {
  /** llamaport's version, e.g. "0.1.0". */
  version: string;
  /** A build id in llama-server's `b<build>-<hash>` form (its `build_info` and `system_fingerprint`). */
  buildInfo: string;
}

/** What a route handler gets for one request. */
export interface RouteContext<Body = unknown> {
  /** The JSON body, already checked against the route's `body` schema (and decoded: `nullable()` fields arrive as undefined). */
  body: Body;
  /** Path parameters, e.g. `{ model: "demo" }` for `/v1/models/:model`. */
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  headers: Headers;
  /** Aborted when the client disconnects; pass it to engine calls so decoding stops at once. */
  signal: AbortSignal;
  engine: EngineFacade;
  log: PluginLogger;
  request: Request;
  server: ServerInfo;
}

/**
 * A handler returns a value (sent as JSON), a `Response`, a stream made with `sse()` / `ndjson()`, or an async
 * generator (sent as SSE). Throw `LlamaportError` for a problem with a status; the plugin's `error` hook renders it.
 */
export type RouteHandler<Body = unknown> = (context: RouteContext<Body>) => unknown;

export interface RouteDefinition<Schema extends TSchema = TSchema> {
  method: HttpMethod;
  /** Path with `:params`, e.g. `/v1/models/:model`. */
  path: string;
  /** TypeBox schema (`t.Object(...)`) of the JSON body; a body that does not match is a 400 naming the field. */
  body?: Schema;
  handler: RouteHandler<TSchema extends Schema ? unknown : StaticDecode<Schema>>;
  /** Overrides the plugin's `fields` for this route's problems (e.g. `{ maxTokens: "max_output_tokens" }`). */
  fields?: Record<string, string>;
  /**
   * Serve only requests that carry this header (any value, name in any case). Such a route may share its method and
   * path with another plugin's route without `when`, which keeps every other request: e.g. Anthropic's
   * `GET /v1/models` for requests with `anthropic-version` (its SDK always sends it) beside OpenAI's for the rest.
   * Neither plugin needs to know the other's format. With `includes`, only requests whose header value contains that
   * text (in any letter case): `{ header: "accept", includes: "text/html" }` serves browsers opening a page.
   */
  when?: { header: string; includes?: string };
}

/**
 * A route that answers exactly as another served route does, under its own path: the host serves it with whatever
 * route serves `sameAs` at the time (another plugin's included), so it follows hot reloads and replacements. Body
 * checks, errors and streaming are the target's. Path parameters are passed on by position. Without a target (its
 * plugin removed) it answers 404 in this plugin's error format.
 * @example { method: "POST", path: "/chat/completions", sameAs: "/v1/chat/completions" }
 */
export interface RouteAlias {
  method: HttpMethod;
  path: string;
  /** The path of the route to answer as, with the same method; a route with a handler, not another alias. */
  sameAs: string;
}

export interface PluginSetupContext {
  engine: EngineFacade;
  log: PluginLogger;
  server: ServerInfo;
}

export interface PluginDefinition {
  /** Used in logs, errors and `GET /plugins`. */
  name: string;
  version?: string;
  // biome-ignore lint/suspicious/noExplicitAny: each route has its own body type; the list holds them all.
  routes: (RouteDefinition<any> | RouteAlias)[];
  /**
   * Path prefixes this protocol speaks for (e.g. `["/v1"]`): a request to an unknown route under one of them, and any
   * error the host answers itself there (bad JSON, body too large), is rendered with this plugin's `error`. The
   * longest matching prefix among all plugins wins.
   */
  prefixes?: string[];
  /**
   * The engine's neutral field names mapped to this protocol's wire names, e.g. `{ maxTokens: "max_tokens",
   * topP: "top_p" }`: a problem's `param`, and a message that starts with it, are renamed before `error` sees them.
   */
  fields?: Record<string, string>;
  /** Runs once when the plugin is loaded (and again on each reload). Throwing marks the load as failed. */
  setup?(context: PluginSetupContext): void | Promise<void>;
  /** Runs when the plugin is replaced or removed. */
  dispose?(): void | Promise<void>;
  /** This protocol's error body for a problem; the host sets the status (and Retry-After). Default: `{error: {code, message}}`. */
  error?(problem: Problem): unknown;
  /** The last item of a stream that failed after it started; default: `error(problem)` as one more item. */
  streamError?(problem: Problem): unknown;
}

/**
 * Declare a plugin. It only adds types: the host checks the object when it loads the file.
 * @example export default definePlugin({ name: "hello", routes: [{ method: "GET", path: "/hello", handler: () => ({ hi: true }) }] });
 */
export function definePlugin(plugin: PluginDefinition): PluginDefinition {
  return plugin;
}

/** Declare one route with its body type inferred from the schema (optional: plain objects work too). */
export function route<Schema extends TSchema>(definition: RouteDefinition<Schema>): RouteDefinition<Schema> {
  return definition;
}
