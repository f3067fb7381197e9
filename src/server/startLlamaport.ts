/** Wires config, engine, plugin host and HTTP server together; used by the CLI and by tests that run a real server in-process. */
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { defaultModels } from "../config/defaultModels.ts";
import { ConfigError, loadModelsFile, type ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { watchModelsFile } from "../config/watchModelsFile.ts";
import { cleanStaleDownloads } from "../engine/download/staleDownloads.ts";
import { describeGeneration, Engine } from "../engine/Engine.ts";
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import { builtinPlugins, builtinSources } from "../plugins/builtinPlugins.ts";
import type { Log, PluginHost } from "../plugins/PluginHost.ts";
import { AccessPolicy, isLoopback } from "./accessPolicy.ts";
import { LlamaportServer } from "./LlamaportServer.ts";
import { LoadProgress } from "./LoadProgress.ts";
import { currentRequestRecord } from "./RequestRecord.ts";
import { ServerMetrics } from "./ServerMetrics.ts";
import packageJson from "../../package.json" with { type: "json" };

export const version: string = packageJson.version;

export interface StartOptions {
  host?: string;
  /** 0 = any free port. */
  port?: number;
  /** models.yaml path; when absent, the built-in registry (offline demo model) is used. */
  models?: string;
  /**
   * Without `models`: where a models.yaml may appear later. The built-in registry serves until it does, then the
   * file's; `plugins/` beside it is watched from the start, and `pull` writes the file there.
   */
  awaitModelsFile?: string;
  /** The text a models.yaml written by `pull` starts from (`llamaport init`'s), when there is none yet. */
  newModelsFileText?: string;
  /** Plugins folder; default `plugins/` beside models.yaml. */
  plugins?: string;
  threads?: number;
  builtins?: Record<string, PluginDefinition>;
  /** Where generated and downloaded models are kept (the CLI passes `defaultCacheDir(process.env)`). */
  cacheDir: string;
  /** Base URL for `hf:` model sources (default: the public hub). */
  hfEndpoint?: string;
  /** Hugging Face token for gated and private models (sent to the hub only). */
  hfToken?: string;
  /** A download that gets no further for this long is stopped (default 60 s). */
  downloadStallTimeoutMs?: number;
  /** Where `/api/pull` may fetch new models from (default: `anywhere` on a loopback address, else `hub`). */
  pullFrom?: "anywhere" | "hub";
  /** Largest request body accepted, in bytes (default 10 MiB). */
  maxBodyBytes?: number;
  /** API keys clients must send; `api_keys` in models.yaml and the key file add more. None: no key needed. */
  apiKeys?: string[];
  /** A file of API keys, one per line (`#` starts a comment). */
  apiKeyFile?: string;
  /** Host names accepted besides the local ones (`*`: any). */
  allowedHosts?: string[];
  /** Browser origins accepted besides the local ones (`*` wildcards). */
  allowedOrigins?: string[];
  /** Seconds a quiet connection stays open (default 30). */
  idleTimeoutSeconds?: number;
  /** Requests in flight at once (default: half the open-file limit, at most 4096). */
  maxRequests?: number;
  /** `GET /metrics` without an API key, like `/health` (for scrapers that send none). Default false. */
  publicMetrics?: boolean;
  log?: Log;
  /** A line redrawn in place on a terminal (model loading progress); without it progress goes to the log. */
  statusLine?: (text: string | undefined) => void;
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
  /** Stops the server; `graceMs` gives running requests that long to finish (default: end them at once). */
  stop(options?: { graceMs?: number }): Promise<void>;
}

export const stderrLog: Log = (level, message) => {
  process.stderr.write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}\n`);
};

/** Request bodies up to this size are read; larger ones are a 413 in the route's protocol. */
export const defaultMaxBodyBytes = 10 * 1024 ** 2;

export async function startLlamaport(options: StartOptions): Promise<RunningLlamaport> {
  const log = options.log ?? stderrLog;
  const modelsFile = options.models && resolve(options.models);
  const awaited = !modelsFile && options.awaitModelsFile ? resolve(options.awaitModelsFile) : undefined;
  const config: ModelRegistryConfig = modelsFile ? await loadModelsFile(modelsFile) : defaultModels();
  const home = modelsFile ?? awaited;
  const pluginsDir = options.plugins ?? (home ? join(dirname(home), "plugins") : undefined);
  const host = options.host ?? "127.0.0.1";
  const fixedKeys = [...(options.apiKeys ?? []), ...(options.apiKeyFile ? await readKeyFile(options.apiKeyFile) : [])];
  await cleanStaleDownloads(options.cacheDir, (m) => log("info", m));
  const metrics = new ServerMetrics({ loadedModels: () => engine.loadedModels() });
  const progress = new LoadProgress({ status: options.statusLine, log });
  const engine = new Engine(config, {
    threads: options.threads,
    cacheDir: options.cacheDir,
    hfEndpoint: options.hfEndpoint,
    hfToken: options.hfToken,
    modelsFile: home,
    newModelsFileText: options.newModelsFileText,
    downloadStallTimeoutMs: options.downloadStallTimeoutMs,
    // Clients may reach a server beyond loopback from other machines: they must not make it fetch from any URL
    // (SSRF into its network, or a body without end filling its disk). `hf:` sources and models.yaml's stay.
    pullFrom: options.pullFrom ?? (isLoopback(host) ? "anywhere" : "hub"),
    log: (m) => log("info", m),
    // A generation's numbers go to its request's single log line, which waits for it (a stopped stream's generation
    // ends after its body); one started outside a request gets a line of its own.
    onGenerationStart: () => {
      const record = currentRequestRecord();
      const held = record?.hold() === true;
      return (summary) => {
        if (summary) metrics.generation(summary);
        if (held) {
          if (summary) record!.addGeneration(summary);
          record!.settle();
        } else if (summary) log("info", describeGeneration(summary));
      };
    },
    onEmbedding: ({ model, promptTokens }) => {
      metrics.embedding(model, promptTokens);
      currentRequestRecord()?.addEmbedding(model, promptTokens);
    },
    onLoadProgress: progress.report,
  });
  // The keys in force: fixed ones plus the current models.yaml's (edits apply at once). Same array until either changes.
  let keys = [...fixedKeys, ...config.apiKeys];
  const access = new AccessPolicy({
    boundHost: host,
    apiKeys: () => keys,
    allowedHosts: options.allowedHosts,
    allowedOrigins: options.allowedOrigins,
    openPaths: options.publicMetrics ? ["/metrics"] : [],
  });
  const server = new LlamaportServer({
    engine,
    pluginsDir,
    builtins: options.builtins ?? builtinPlugins,
    builtinSources: options.builtins ? undefined : builtinSources,
    host,
    port: options.port ?? 9112,
    version,
    maxBodyBytes: options.maxBodyBytes ?? defaultMaxBodyBytes,
    access,
    idleTimeoutSeconds: Math.ceil(options.idleTimeoutSeconds ?? 30),
    maxRequests: options.maxRequests ?? defaultMaxRequests(),
    metrics,
    log,
  });
  const { plugins } = server;
  await server.start();
  log("info", `models from ${modelsFile ?? "the built-in registry"}: ${config.models.map((m) => m.name).join(", ") || "(none)"}`);
  if (awaited)
    log("info", `no models.yaml found: serving the built-in registry until ${awaited} is created (\`llamaport init\` writes one)`);
  const warnIfOpen = () => {
    if (!isLoopback(host) && keys.length === 0)
      log(
        "warn",
        `WARNING: listening on ${host} without an API key: anyone who can reach this address can use, load and unload your models. ` +
          "Set one with --api-key-file, LLAMAPORT_API_KEY or api_keys in models.yaml.",
      );
  };
  warnIfOpen();

  // Watched through its folder, so a file created after start (by an editor, `llamaport init` or `pull`) is picked up.
  let fromFile = Boolean(modelsFile);
  const watched = modelsFile ?? awaited;
  const watcher =
    options.watch !== false && watched && existsSync(dirname(watched))
      ? watchModelsFile(watched, {
          onChange: (next) => {
            engine.updateRegistry(next);
            keys = [...fixedKeys, ...next.apiKeys];
            warnIfOpen();
            const names = next.models.map((m) => m.name).join(", ") || "(none)";
            log("info", fromFile ? `models.yaml reloaded: ${names}` : `${watched} was created: serving its models: ${names}`);
            fromFile = true;
          },
          onError: (error) =>
            log("error", `${error.message}; ${fromFile ? "the previous models.yaml" : "the built-in registry"} keeps serving`),
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
    stop: async (stopOptions) => {
      watcher?.close();
      await server.stop(stopOptions);
    },
  };
}

/** API keys from a file: one per line; blank lines and lines starting with # are skipped. */
async function readKeyFile(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError(file, `cannot read the API key file: ${(error as Error).message}`, {}, { cause: error });
  }
  const keys = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  if (keys.length === 0) throw new ConfigError(file, "the API key file has no keys (one per line)");
  return keys;
}

/**
 * Requests in flight at once: each holds a socket, so half the open-file limit (the rest is for models, plugins and
 * idle connections), at most 4096. Linux reports the limit in /proc; elsewhere 1024 is assumed.
 */
function defaultMaxRequests(): number {
  let limit = 1024;
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (match) limit = Number(match[1]);
  } catch {
    // Not Linux.
  }
  return Math.max(64, Math.min(4096, Math.floor(limit / 2)));
}
