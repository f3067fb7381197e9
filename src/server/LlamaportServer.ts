/** The running server: listens at once, checks access before routing, swaps in a new app whenever the plugin set changes, and shuts down gracefully. */
import type { Server } from "bun";
import type { Engine } from "../engine/Engine.ts";
import { LlamaportError, type Problem, toProblem } from "../engine/EngineError.ts";
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import { type Log, PluginHost, type ServedRoute } from "../plugins/PluginHost.ts";
import type { AccessPolicy } from "./accessPolicy.ts";
import { buildApp, type HostState, hostPaths, problemRenderer } from "./buildApp.ts";
import { OpenApiDocument } from "./openApiDocument.ts";
import { RequestRecord, currentRequestRecord, requestIdFrom, withRequestRecord } from "./RequestRecord.ts";
import { renderProblem } from "./renderProblem.ts";
import { requestLine } from "./requestLine.ts";
import { ServerMetrics } from "./ServerMetrics.ts";
import { serverInfo } from "./serverInfo.ts";

export interface ServerOptions {
  engine: Engine;
  host: string;
  port: number;
  version: string;
  /** The plugins folder (none: built-ins only). */
  pluginsDir?: string;
  builtins: Record<string, PluginDefinition>;
  /** The built-ins' source texts (a file in the plugins folder with the same text is not loaded again). */
  builtinSources?: Record<string, string>;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  access: AccessPolicy;
  /** Seconds a connection may stay quiet (between requests, or a request being sent) before it is closed. */
  idleTimeoutSeconds: number;
  /** Plugin requests in flight at once; more are answered 503 at once. */
  maxRequests: number;
  /** Default: metrics of this server alone. */
  metrics?: ServerMetrics;
  log: Log;
}

/** What serves requests now: the Elysia app and the error renderer for the same plugin set, swapped together. */
interface Served {
  app: ReturnType<typeof buildApp>;
  render(problem: Problem, path: string, headers: Headers): Response;
}

export class LlamaportServer {
  readonly plugins: PluginHost;
  private server?: Server<undefined>;
  private served: Served;
  private readonly openApi: OpenApiDocument;
  private readonly metrics: ServerMetrics;
  private health: ReturnType<HostState["health"]> = { status: "loading" };
  private readonly state: HostState;
  /** Plugin requests whose response is not complete yet (streams included). */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  private stopping = false;
  /** Set while over `maxRequests`, so the log says so once per episode, not once per refused request. */
  private overloaded = false;
  /** Resolves when llama.cpp is initialised (or failed to be). */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly options: ServerOptions) {
    const { engine, log } = options;
    const metrics = options.metrics ?? new ServerMetrics(engine);
    this.metrics = metrics;
    this.openApi = new OpenApiDocument({ version: options.version, requiresKey: () => options.access.requiresKey });
    this.state = {
      engine,
      plugins: () => this.plugins.list(),
      health: () => this.health,
      server: serverInfo(options.version),
      limits: { maxBodyBytes: options.maxBodyBytes, admit: (request) => this.admit(request) },
      metrics: async () => new Response(await metrics.render(), { headers: { "content-type": metrics.contentType } }),
      openApi: () => this.openApi.current(),
      log,
    };
    this.plugins = new PluginHost({
      dir: options.pluginsDir,
      builtins: options.builtins,
      builtinSources: options.builtinSources,
      engine,
      server: this.state.server,
      log,
      reservedPaths: hostPaths,
      // A route set Elysia's router refuses (e.g. `/a/:x` next to `/a/:y/b`) must fail that plugin's load, not every
      // request: build and exercise a candidate app first.
      validateRoutes: (routes) => {
        buildApp(routes, this.state).compile();
      },
      onChange: (routes) => {
        this.served = this.serve(routes);
        this.openApi.update(routes);
      },
      onLoad: (plugin, result) => metrics.pluginLoad(plugin, result),
    });
    this.served = this.serve([]);
  }

  get url(): string {
    const hostname = this.server?.hostname ?? this.options.host;
    return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${this.port}`;
  }

  get port(): number {
    return this.server?.port ?? 0;
  }

  async start(): Promise<void> {
    const { engine, log } = this.options;
    await this.plugins.startBuiltins();
    this.server = Bun.serve({
      hostname: this.options.host,
      port: this.options.port,
      // Bun turns SO_REUSEPORT on when `development` is false: a second instance on the same port would start and
      // split the requests with this one. It must fail with EADDRINUSE instead.
      reusePort: false,
      // Quiet connections close; requests in flight are exempt while they run (`admit`).
      idleTimeout: this.options.idleTimeoutSeconds,
      // The host's own limit (readJsonBody) answers too-large bodies with a 413 in the route's protocol; Bun's default
      // of 128 MB would answer larger ones with an empty 413 or a reset.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      development: false,
      fetch: (request) => this.handle(request),
      // Last resort: whatever escapes the app still gets a JSON error, never Bun's HTML error page.
      error: (error) => renderProblem(toProblem(error)),
    });
    log("info", `listening on ${this.url}`);
    // Listen first: getLlama takes up to a second; requests that arrive meanwhile wait for it inside the engine.
    this.ready = engine.start().then(
      () => {
        if (!this.stopping) this.health = { status: "ok" };
      },
      (error: unknown) => {
        this.health = { status: "error", error: (error as Error).message };
        log("error", `engine failed to start: ${(error as Error).message}`);
      },
    );
    // Plugins from the folder are foreign code: load them once /health and the built-in protocols already answer.
    await this.plugins.loadFolder();
  }

  /**
   * Stops gracefully: no new requests (503 in each protocol's format), queued ones answered 503 at once, running ones
   * given up to `graceMs` to finish; then each is ended with its protocol's final error event, and models are freed.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    const { engine, log } = this.options;
    this.stopping = true;
    this.health = { status: "stopping" };
    // Stop accepting connections; the open ones carry on, and Bun closes each once its response is sent.
    const closed = this.server?.stop(false);
    engine.beginShutdown();
    if (this.inFlight > 0 && (options.graceMs ?? 0) > 0) {
      log("info", `waiting up to ${options.graceMs} ms for ${this.inFlight} running request(s) to finish`);
      await this.idle(options.graceMs!);
    }
    if (this.inFlight > 0) {
      log("info", `ending ${this.inFlight} request(s) still running`);
      engine.abortGenerations();
      await this.idle(2_000);
    }
    // The last bytes of each response (a stream's final event) are still on their way: let Bun send them and close.
    await Promise.race([closed, Bun.sleep(2_000)]);
    await this.server?.stop(true);
    await this.plugins.stop();
    await engine.dispose();
  }

  private serve(routes: ServedRoute[]): Served {
    return { app: buildApp(routes, this.state), render: problemRenderer(routes) };
  }

  /**
   * Every request: gets an id (`x-request-id` in and out) and a record, which becomes its log line and metrics once
   * the response is complete (a stream's end included).
   */
  private async handle(request: Request): Promise<Response> {
    const url = request.url;
    const start = url.indexOf("/", 7);
    const query = url.indexOf("?", start);
    const path = url.slice(start, query < 0 ? undefined : query);
    const record = new RequestRecord(requestIdFrom(request.headers), request.method, path, performance.now(), this.complete);
    let response: Response;
    try {
      response = await withRequestRecord(record, () => this.route(request, path, record));
    } catch (error) {
      record.error = (error as Error)?.message;
      throw error;
    } finally {
      // No plugin stream holds the record: the body is already complete.
      if (!record.awaitsBody) record.settle();
    }
    response.headers.set("x-request-id", record.id);
    record.status = response.status;
    record.settle();
    return response;
  }

  /** Access checks (Host, Origin, API key) before routing, CORS headers after. */
  private async route(request: Request, path: string, record: RequestRecord): Promise<Response> {
    const served = this.served;
    const decision = this.options.access.decide(request, path);
    if (decision.kind === "preflight") return new Response(null, { status: 204, headers: decision.headers });
    if (decision.kind === "refuse") {
      if (decision.log) this.options.log("warn", decision.log);
      record.error = decision.problem.message;
      return withHeaders(served.render(toProblem(decision.problem), path, request.headers), decision.headers);
    }
    const response = await served.app.handle(request);
    if (record.route === undefined && hostPaths.includes(path)) record.route = path;
    return withHeaders(response, decision.headers);
  }

  /** A request is over (response, body and generations): its line is logged and it is counted. */
  private readonly complete = (record: RequestRecord): void => {
    const durationMs = performance.now() - record.startedAt;
    this.metrics.request(record, durationMs);
    const line = requestLine(record, durationMs);
    if (line) this.options.log(line.level, line.message, line.fields);
  };

  /** A plugin request starts: refused while stopping or over the limit; exempt from the idle timeout until it ends. */
  private admit(request: Request): () => void {
    if (this.stopping) throw new LlamaportError("unavailable", "the server is shutting down; try again once it is back", { retryAfter: 5 });
    if (this.inFlight >= this.options.maxRequests) {
      if (!this.overloaded) {
        this.overloaded = true;
        this.options.log("warn", `${this.inFlight} requests in flight, the limit (--max-requests): refusing more with 503 until some end`);
      }
      throw new LlamaportError("busy", `the server is handling ${this.inFlight} requests, its limit; try again shortly`, {
        retryAfter: 1,
      });
    }
    this.overloaded = false;
    this.inFlight++;
    const record = currentRequestRecord();
    if (record) record.awaitsBody = true;
    const server = this.server;
    // A request may wait quietly for long (a model loading, a queue): no idle timeout while it runs.
    server?.timeout(request, 0);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight--;
      // Back to the normal idle timeout for the keep-alive connection (setting 0 above lasts past this request).
      server?.timeout(request, this.options.idleTimeoutSeconds);
      if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      record?.settle();
    };
  }

  /** Resolves when no plugin request is in flight, or after `timeoutMs`. */
  private idle(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

function withHeaders(response: Response, headers: Record<string, string>): Response {
  for (const name in headers) response.headers.set(name, headers[name]!);
  return response;
}
