/** The running server: listens at once, initialises the engine behind it, and swaps in a new app whenever the plugin set changes. */
import type { Server } from "bun";
import type { Engine } from "../engine/Engine.ts";
import { toProblem } from "../engine/EngineError.ts";
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import { type Log, PluginHost } from "../plugins/PluginHost.ts";
import { buildApp, type HostState, hostPaths } from "./buildApp.ts";
import { renderProblem } from "./renderProblem.ts";

export interface ServerOptions {
  engine: Engine;
  host: string;
  port: number;
  version: string;
  /** The plugins folder (none: built-ins only). */
  pluginsDir?: string;
  builtins: Record<string, PluginDefinition>;
  /** Largest request body accepted, in bytes. */
  maxBodyBytes: number;
  log: Log;
}

export class LlamaportServer {
  readonly plugins: PluginHost;
  private server?: Server<undefined>;
  private app: ReturnType<typeof buildApp>;
  private health: ReturnType<HostState["health"]> = { status: "loading" };
  private readonly state: HostState;
  /** Resolves when llama.cpp is initialised (or failed to be). */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly options: ServerOptions) {
    const { engine, log } = options;
    this.state = {
      engine,
      plugins: () => this.plugins.list(),
      health: () => this.health,
      version: options.version,
      limits: { maxBodyBytes: options.maxBodyBytes },
      log,
    };
    this.plugins = new PluginHost({
      dir: options.pluginsDir,
      builtins: options.builtins,
      engine,
      log,
      reservedPaths: hostPaths,
      // A route set Elysia's router refuses (e.g. `/a/:x` next to `/a/:y/b`) must fail that plugin's load, not every
      // request: build and exercise a candidate app first.
      validateRoutes: (routes) => {
        buildApp(routes, this.state).compile();
      },
      onChange: (routes) => {
        this.app = buildApp(routes, this.state);
      },
    });
    this.app = buildApp([], this.state);
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
    await this.plugins.start();
    this.server = Bun.serve({
      hostname: this.options.host,
      port: this.options.port,
      // Generation can be quiet for long (model loading, queueing): never drop an idle connection.
      idleTimeout: 0,
      development: false,
      fetch: (request) => this.app.handle(request),
      // Last resort: whatever escapes the app still gets a JSON error, never Bun's HTML error page.
      error: (error) => renderProblem(toProblem(error)),
    });
    log("info", `listening on ${this.url}`);
    // Listen first: getLlama takes up to a second; requests that arrive meanwhile wait for it inside the engine.
    this.ready = engine.start().then(
      () => {
        this.health = { status: "ok" };
      },
      (error: unknown) => {
        this.health = { status: "error", error: (error as Error).message };
        log("error", `engine failed to start: ${(error as Error).message}`);
      },
    );
  }

  async stop(): Promise<void> {
    await this.server?.stop(true);
    await this.plugins.stop();
    await this.options.engine.dispose();
  }
}
