/** Loads protocol plugins (built-in and from the plugins folder), hot-reloads them on change, and keeps a failed one from hurting the rest. */
import { existsSync, readdirSync, watch, type FSWatcher } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve, sep } from "node:path";
import type { EngineFacade } from "../engine/types.ts";
import type { PluginDefinition, PluginLogger, ServerInfo } from "../pluginApi/definePlugin.ts";
import { checkPluginDefinition, type CompiledRoute, describeCondition } from "./checkPluginDefinition.ts";
import { describeLoadError, type LoadErrorInfo } from "./describeLoadError.ts";
import { registerApiModule } from "./registerApiModule.ts";
import { samePath } from "./routePath.ts";

export type LogLevel = "info" | "warn" | "error";

/** A log line; `fields` are its facts as data (JSON logs carry them as keys; text logs show only the message). */
export type Log = (level: LogLevel, message: string, fields?: Record<string, unknown>) => void;

/** A route as the server serves it: which plugin owns it and how that plugin logs. */
export interface ServedRoute extends CompiledRoute {
  pluginId: string;
  plugin: PluginDefinition;
  log: PluginLogger;
}

/** What `GET /plugins` shows for one plugin file or built-in. */
export interface PluginStatus {
  id: string;
  name: string;
  version?: string;
  /** "builtin" or the file's path. */
  source: string;
  state: "active" | "failed";
  routes: string[];
  loadedAt?: string;
  /** The last load error; a failed reload keeps the previous version active and shows the error here. */
  lastError?: LoadErrorInfo & { at: string };
}

interface ActivePlugin {
  id: string;
  source: string;
  plugin: PluginDefinition;
  routes: ServedRoute[];
  loadedAt: string;
}

const pluginExtensions = new Set([".ts", ".mts", ".js", ".mjs"]);

export interface PluginHostOptions {
  /** The plugins folder; files there replace built-ins of the same name. Missing folder = built-ins only. */
  dir?: string;
  builtins: Record<string, PluginDefinition>;
  /** The built-ins' source texts: a file in the folder with the same text is the built-in, not a replacement. */
  builtinSources?: Record<string, string>;
  engine: EngineFacade;
  server: ServerInfo;
  log: Log;
  /** Paths the server serves itself; no plugin may take them. */
  reservedPaths: readonly string[];
  /** Throws if the router cannot serve this route set (it may refuse what the host's own checks allow). */
  validateRoutes(routes: ServedRoute[]): void;
  /** Called after every change of the served route set. */
  onChange(routes: ServedRoute[]): void;
  /** Called after each load of a plugin file or built-in: whether it now serves, or failed (the previous one serving on). */
  onLoad?(plugin: string, result: "loaded" | "failed"): void;
  /** Debounce for file events; editors write files in several steps. */
  debounceMs?: number;
}

export class PluginHost {
  private readonly active = new Map<string, ActivePlugin>();
  private readonly status = new Map<string, PluginStatus>();
  private watcher?: FSWatcher;
  private parentWatcher?: FSWatcher;
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private version = 0;
  /** Serialises loads so two quick edits cannot finish out of order. */
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly options: PluginHostOptions) {}

  get dir(): string | undefined {
    return this.options.dir && resolve(this.options.dir);
  }

  /** Serves the built-in plugins (our own code: quick, and cannot hang). */
  async startBuiltins(): Promise<void> {
    registerApiModule();
    for (const [id, plugin] of Object.entries(this.options.builtins)) await this.activate(id, "builtin", plugin);
    this.emit();
  }

  /**
   * Loads the plugins folder and watches it. The server calls this after it listens: a plugin's code runs in this
   * process, and one that never finishes loading must not keep the server from answering `/health` or serving the
   * others (an endless synchronous loop still stops everything; the log then names the plugin it was loading).
   */
  async loadFolder(): Promise<void> {
    const dir = this.dir;
    if (dir && existsSync(dir)) {
      for (const file of (await readdir(dir)).sort()) if (isPluginFile(file)) await this.loadFile(join(dir, file));
    } else if (dir) {
      this.options.log("info", `plugins folder ${dir} does not exist yet; serving built-in plugins until it appears`);
    }
    if (dir) this.watchFolder(dir);
    this.emit();
  }

  async start(): Promise<void> {
    await this.startBuiltins();
    await this.loadFolder();
  }

  /**
   * Watches the plugins folder, and its parent for the folder itself: a folder created after start, or deleted and
   * made again, is picked up (a watcher on a deleted folder goes quiet for good).
   */
  private watchFolder(dir: string): void {
    const underDir = () => [...this.active.values()].filter((p) => p.source.startsWith(dir + sep)).map((p) => p.source);
    const arm = (rescan: boolean) => {
      this.watcher?.close();
      this.watcher = undefined;
      try {
        this.watcher = watch(dir, (_event, name) => {
          if (name && isPluginFile(name.toString())) this.schedule(join(dir, name.toString()));
        });
      } catch {
        return; // Gone between the event and the watch: the parent's next event says so.
      }
      // A (re-)created folder arrives with its files; plugins from the old one that are not there go.
      if (rescan)
        for (const file of [...readdirSync(dir).map((f) => join(dir, f)), ...underDir()]) if (isPluginFile(file)) this.schedule(file);
    };
    if (existsSync(dir)) arm(false);
    const parent = dirname(dir);
    if (!existsSync(parent)) return;
    this.parentWatcher = watch(parent, (_event, name) => {
      if (name?.toString() !== basename(dir)) return;
      if (existsSync(dir)) return arm(true);
      this.watcher?.close();
      this.watcher = undefined;
      for (const source of underDir()) this.schedule(source);
    });
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    this.parentWatcher?.close();
    for (const timer of this.timers.values()) clearTimeout(timer);
    await this.queue;
    for (const active of this.active.values()) await this.safeDispose(active);
    this.active.clear();
  }

  routes(): ServedRoute[] {
    return [...this.active.values()].flatMap((p) => p.routes);
  }

  /** The plugins serving now. */
  plugins(): PluginDefinition[] {
    return [...this.active.values()].map((p) => p.plugin);
  }

  /**
   * What `GET /plugins` shows. Files are named relative to the plugins folder's parent (`plugins/x.ts`): clients
   * learn nothing about the file system, and the log keeps the whole paths.
   */
  list(): PluginStatus[] {
    const dir = this.dir;
    const shown = (text: string) => (dir ? text.replaceAll(dirname(dir) + sep, "") : text);
    return [...this.status.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((status) => ({
        ...status,
        source: shown(status.source),
        lastError: status.lastError && {
          ...status.lastError,
          message: shown(status.lastError.message),
          file: status.lastError.file && shown(status.lastError.file),
        },
      }));
  }

  /** Resolves once every file event seen so far has been handled (tests use it; the watcher does not need it). */
  settled(): Promise<void> {
    return this.queue;
  }

  private schedule(file: string): void {
    clearTimeout(this.timers.get(file));
    this.timers.set(
      file,
      setTimeout(() => {
        this.timers.delete(file);
        this.queue = this.queue.then(async () => {
          if (existsSync(file)) await this.loadFile(file);
          else await this.removeFile(file);
          this.emit();
        });
      }, this.options.debounceMs ?? 30),
    );
  }

  private async loadFile(file: string): Promise<void> {
    const id = pluginId(file);
    if (await this.isBuiltinCopy(id, file)) {
      // The bundled file itself (a source checkout's plugins/, or a copy of it): the built-in serves it already.
      const active = this.active.get(id);
      if (active && active.source !== "builtin") {
        this.options.log("info", `plugin ${id}: ${file} is the built-in's code again; serving the built-in`);
        await this.activate(id, "builtin", this.options.builtins[id]!);
      }
      return;
    }
    // Before running foreign code: if it hangs the process, this is the last line in the log.
    this.options.log("info", `loading plugin ${id} from ${file}`);
    let module: unknown;
    try {
      // A new query string makes Bun import the edited file again instead of returning the cached module. It must be
      // a plain path: Bun drops the query of a file:// URL and would hand back the first version forever.
      module = await import(`${file}?v=${++this.version}`);
    } catch (error) {
      return this.fail(id, file, error);
    }
    let checked: ReturnType<typeof checkPluginDefinition>;
    try {
      checked = checkPluginDefinition(module);
    } catch (error) {
      return this.fail(id, file, error);
    }
    await this.activate(id, file, checked.plugin, checked.routes);
  }

  private async isBuiltinCopy(id: string, file: string): Promise<boolean> {
    const text = this.options.builtinSources?.[id];
    if (text === undefined || !this.options.builtins[id]) return false;
    return (await readFile(file, "utf8").catch(() => undefined)) === text;
  }

  private async activate(id: string, source: string, plugin: PluginDefinition, compiled?: CompiledRoute[]): Promise<void> {
    let routes: CompiledRoute[];
    try {
      routes = compiled ?? checkPluginDefinition(plugin).routes;
    } catch (error) {
      return this.fail(id, source, error);
    }
    const log = pluginLogger(plugin.name, this.options.log);
    for (const other of this.active.values()) {
      if (other.id === id) continue;
      for (const route of routes) {
        // Routes that serve only requests with a header (`when`) share a path with one that serves the rest.
        const clash = other.routes.find(
          (r) =>
            r.method === route.method &&
            samePath(r.path, route.path) &&
            r.header === route.header &&
            r.headerIncludes === route.headerIncludes,
        );
        if (clash) {
          const what = `route ${route.method} ${route.path}${route.header ? ` (requests with ${describeCondition(route.header, route.headerIncludes)})` : ""}`;
          return this.fail(id, source, new Error(`${what} is already served by plugin "${other.plugin.name}"`));
        }
      }
    }
    const reserved = routes.find((r) => this.options.reservedPaths.includes(r.path));
    if (reserved) return this.fail(id, source, new Error(`route ${reserved.method} ${reserved.path} is reserved by the host`));
    const served = routes.map((r) => ({ ...r, pluginId: id, plugin, log }));
    try {
      const others = [...this.active.values()].filter((p) => p.id !== id).flatMap((p) => p.routes);
      this.options.validateRoutes([...others, ...served]);
    } catch (error) {
      return this.fail(id, source, new Error(`its routes cannot be served alongside the others: ${(error as Error).message}`));
    }
    try {
      await withTimeout(
        Promise.resolve(plugin.setup?.({ engine: this.options.engine, log, server: this.options.server })),
        10_000,
        "setup",
      );
    } catch (error) {
      return this.fail(id, source, error);
    }
    const previous = this.active.get(id);
    const active: ActivePlugin = {
      id,
      source,
      plugin,
      loadedAt: new Date().toISOString(),
      routes: served,
    };
    this.active.set(id, active);
    this.options.onLoad?.(id, "loaded");
    this.status.set(id, {
      id,
      name: plugin.name,
      version: plugin.version,
      source,
      state: "active",
      routes: routes.map((r) => `${r.method} ${r.path}${r.header ? ` (with ${describeCondition(r.header, r.headerIncludes)})` : ""}`),
      loadedAt: active.loadedAt,
    });
    if (previous) {
      const what = previous.source === "builtin" ? "replaces the built-in" : "reloaded";
      this.options.log("info", `plugin ${plugin.name} ${what} from ${source}`);
      // Requests already running keep the old handlers; dispose only tells the old version it is no longer routed.
      await this.safeDispose(previous);
    } else if (source !== "builtin") this.options.log("info", `plugin ${plugin.name} loaded from ${source}`);
  }

  private async removeFile(file: string): Promise<void> {
    const id = pluginId(file);
    const active = this.active.get(id);
    if (!active || active.source !== file) {
      if (this.status.get(id)?.source === file) this.status.delete(id);
      return;
    }
    this.active.delete(id);
    this.status.delete(id);
    this.options.log("info", `plugin ${active.plugin.name} removed (${file} deleted)`);
    await this.safeDispose(active);
    const builtin = this.options.builtins[id];
    if (builtin) await this.activate(id, "builtin", builtin);
  }

  private fail(id: string, source: string, error: unknown): void {
    this.options.onLoad?.(id, "failed");
    const info = describeLoadError(error, source);
    const where = info.line ? `${info.file ?? source}:${info.line}${info.column ? `:${info.column}` : ""}` : source;
    const previous = this.active.get(id);
    this.options.log(
      "error",
      `plugin ${id} failed to load (${where}): ${info.message}${previous ? "; the previous version keeps serving" : ""}`,
    );
    const status = this.status.get(id);
    this.status.set(id, {
      id,
      name: status?.name ?? id,
      version: status?.version,
      source,
      state: previous ? "active" : "failed",
      routes: status?.routes ?? [],
      loadedAt: status?.loadedAt,
      lastError: { ...info, at: new Date().toISOString() },
    });
  }

  private async safeDispose(active: ActivePlugin): Promise<void> {
    try {
      await active.plugin.dispose?.();
    } catch (error) {
      this.options.log("warn", `plugin ${active.plugin.name}: dispose failed: ${(error as Error).message}`);
    }
  }

  private emit(): void {
    this.options.onChange(this.routes());
  }
}

function isPluginFile(name: string): boolean {
  return pluginExtensions.has(extname(name)) && !name.endsWith(".d.ts") && !name.startsWith(".") && !name.startsWith("_");
}

function pluginId(file: string): string {
  return basename(file, extname(file));
}

function pluginLogger(name: string, log: Log): PluginLogger {
  return {
    info: (m) => log("info", `[${name}] ${m}`),
    warn: (m) => log("warn", `[${name}] ${m}`),
    error: (m) => log("error", `[${name}] ${m}`),
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
