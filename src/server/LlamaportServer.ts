/** The running server: listens at once, initialises the engine behind it, and swaps in a new app whenever the plugin set changes. */
import type { Server } from "bun";
import type { Engine } from "../engine/Engine.ts";
import type { PluginHost } from "../plugins/PluginHost.ts";
import { buildApp, hostPaths, type HostState } from "./buildApp.ts";

export interface ServerOptions {
  engine: Engine;
  plugins: PluginHost;
  host: string;
  port: number;
  version: string;
  log(level: "info" | "warn" | "error", message: string): void;
}

export class LlamaportServer {
  private server?: Server<undefined>;
  private app?: ReturnType<typeof buildApp>;
  private health: ReturnType<HostState["health"]> = { status: "loading" };
  /** Resolves when llama.cpp is initialised (or failed to be). */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly options: ServerOptions) {}

  get url(): string {
    const hostname = this.server?.hostname ?? this.options.host;
    return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${this.port}`;
  }

  get port(): number {
    return this.server?.port ?? 0;
  }

  async start(): Promise<void> {
    const { engine, plugins, log } = this.options;
    const state: HostState = {
      engine,
      plugins: () => plugins.list(),
      health: () => this.health,
      version: this.options.version,
    };
    plugins.onChange = (routes) => {
      this.app = buildApp(routes, state);
    };
    // A route set Elysia's router refuses (e.g. `/a/:x` next to `/a/:y/b`) must fail that plugin's load, not every
    // request: build and exercise a candidate app first.
    plugins.guard = {
      reservedPaths: hostPaths,
      validate: (routes) => {
        buildApp(routes, state).compile();
      },
    };
    await plugins.start();
    this.app ??= buildApp(plugins.routes(), state);
    this.server = Bun.serve({
      hostname: this.options.host,
      port: this.options.port,
      // Generation can be quiet for long (model loading, queueing): never drop an idle connection.
      idleTimeout: 0,
      development: false,
      fetch: (request) => this.app!.handle(request),
      // Last resort: whatever escapes the app still gets a JSON 500, never Bun's HTML error page.
      error: (error) =>
        new Response(JSON.stringify({ error: `internal error: ${error.message}` }), {
          status: 500,
          headers: { "content-type": "application/json" },
        }),
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
    await this.options.plugins.stop();
    await this.options.engine.dispose();
  }
}
