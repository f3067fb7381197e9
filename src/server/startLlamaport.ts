/** Wires config, engine, plugin host and HTTP server together; used by the CLI and by tests that run a real server in-process. */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defaultModels } from "../config/defaultModels.ts";
import { loadModelsFile, type ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { watchModelsFile } from "../config/watchModelsFile.ts";
import { Engine } from "../engine/Engine.ts";
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import { builtinPlugins } from "../plugins/builtinPlugins.ts";
import type { Log, PluginHost } from "../plugins/PluginHost.ts";
import { LlamaportServer } from "./LlamaportServer.ts";
import packageJson from "../../package.json" with { type: "json" };

export const version: string = packageJson.version;

export interface StartOptions {
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** models.yaml path; when absent, the built-in registry (offline demo model) is used. */
  models?: string;
  /** Plugins folder; default `plugins/` beside models.yaml. */
  plugins?: string;
  threads?: number;
  builtins?: Record<string, PluginDefinition>;
  /** Where generated and downloaded models are kept (the CLI passes `defaultCacheDir(process.env)`). */
  cacheDir: string;
  /** Base URL for `hf:` model sources (default: the public hub). */
  hfEndpoint?: string;
  /** Largest request body accepted, in bytes (default 10 MiB). */
  maxBodyBytes?: number;
  log?: Log;
  /** Watch models.yaml and the plugins folder (default true). */
  watch?: boolean;
}

export interface RunningLlamaport {
  url: string;
  port: number;
  engine: Engine;
  plugins: PluginHost;
  /** Resolves once llama.cpp is initialised. */
  ready: Promise<void>;
  /** Resolves once pending models.yaml and plugin reloads are applied. */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

export const stderrLog: Log = (level, message) => {
  process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`);
};

/** Request bodies up to this size are read; larger ones are a 413 in the route's protocol. */
export const defaultMaxBodyBytes = 10 * 1024 ** 2;

export async function startLlamaport(options: StartOptions): Promise<RunningLlamaport> {
  const log = options.log ?? stderrLog;
  const modelsFile = options.models && resolve(options.models);
  const config: ModelRegistryConfig = modelsFile ? await loadModelsFile(modelsFile) : defaultModels();
  const pluginsDir = options.plugins ?? (modelsFile ? join(dirname(modelsFile), "plugins") : undefined);
  const engine = new Engine(config, {
    threads: options.threads,
    cacheDir: options.cacheDir,
    hfEndpoint: options.hfEndpoint,
    log: (m) => log("info", m),
  });
  const server = new LlamaportServer({
    engine,
    pluginsDir,
    builtins: options.builtins ?? builtinPlugins,
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 9112,
    version,
    maxBodyBytes: options.maxBodyBytes ?? defaultMaxBodyBytes,
    log,
  });
  const { plugins } = server;
  await server.start();
  log("info", `models from ${modelsFile ?? "the built-in registry"}: ${config.models.map((m) => m.name).join(", ") || "(none)"}`);

  const watcher =
    options.watch !== false && modelsFile && existsSync(modelsFile)
      ? watchModelsFile(modelsFile, {
          onChange: (next) => {
            engine.updateRegistry(next);
            log("info", `models.yaml reloaded: ${next.models.map((m) => m.name).join(", ") || "(none)"}`);
          },
          onError: (error) => log("error", `${error.message}; the previous models.yaml keeps serving`),
        })
      : undefined;

  return {
    url: server.url,
    port: server.port,
    engine,
    plugins,
    ready: server.ready,
    settled: async () => {
      await watcher?.settled();
      await plugins.settled();
    },
    stop: async () => {
      watcher?.close();
      await server.stop();
    },
  };
}
