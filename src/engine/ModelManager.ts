/** Model lifecycle: lazy single-flight loading, LRU eviction under max_loaded_models and the memory budget, keep_alive expiry, retiring on registry edits. */
import type { Llama } from "node-llama-cpp";
import { totalmem } from "node:os";
import { formatByteSize } from "../config/byteSize.ts";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { LlamaportError } from "./EngineError.ts";
import { LoadedModel } from "./LoadedModel.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { resolveModelSource } from "./resolveModelSource.ts";
import type { LoadedModelStatus } from "./types.ts";

export interface ModelManagerOptions {
  runtime(): Promise<{ nlc: NodeLlamaCppModule; llama: Llama }>;
  maxLoadedModels(): number;
  /** The registry's entry for a name now (it may have changed since a request resolved it). */
  currentEntry(name: string): ModelEntry | undefined;
  /** Bytes of RAM models may take together, or "auto" (total RAM minus a reserve for everything else). */
  memoryBudget(): "auto" | number;
  defaultThreads: number;
  cacheDir: string;
  hfEndpoint?: string;
  log(message: string): void;
}

/** A model lent to one request. Call `release()` exactly once, in a `finally`. */
export interface ModelUse {
  loaded: LoadedModel;
  /** How long this request waited for the model to load. */
  loadMs: number;
  release(): void;
}

/** What the manager knows about one loaded model; only the manager reads or writes it. */
interface Residency {
  readonly loaded: LoadedModel;
  /** RAM estimated from the GGUF before loading (weights + KV cache), for the memory budget. */
  readonly estimatedBytes: number;
  /** Requests routed to this model that have not finished (queued ones included). */
  users: number;
  lastUsedAt: number;
  /** Milliseconds to stay loaded once idle; negative = forever. The latest request's keep_alive wins, as in Ollama. */
  keepAliveMs: number;
  /** No new requests; unloaded once the running ones end. */
  retired: boolean;
  expiresAt?: number;
  expiryTimer?: ReturnType<typeof setTimeout>;
}

/** setTimeout cannot wait past 2^31-1 ms (~24.8 days): anything longer is as good as "never". */
const longestTimerMs = 2 ** 31 - 1;

export class ModelManager {
  private readonly current = new Map<string, Residency>();
  private readonly loading = new Map<string, Promise<Residency>>();
  private readonly retiring = new Set<Residency>();
  /** Requests waiting for a model that is loading: a fresh model is pinned for them, never evicted before they get it. */
  private readonly waiting = new Map<string, number>();
  /** Memory reserved by loads in flight, so two loads at once cannot both squeeze under the budget. */
  private readonly reserved = new Map<string, number>();

  constructor(private readonly options: ModelManagerOptions) {}

  /** Get a loaded model for a request, loading it if needed. */
  async use(entry: ModelEntry, keepAliveMs?: number): Promise<ModelUse> {
    const started = performance.now();
    for (;;) {
      const ready = this.current.get(entry.name);
      // A models.yaml edit that landed while this model was loading: the loaded one has an outdated entry.
      const latest = this.options.currentEntry(entry.name);
      if (ready && latest && !sameEntry(ready.loaded.entry, latest)) this.retire(ready);
      else if (ready && !ready.loaded.isDisposed) return this.lend(ready, keepAliveMs ?? entry.keepAliveMs, performance.now() - started);
      this.waiting.set(entry.name, (this.waiting.get(entry.name) ?? 0) + 1);
      try {
        await this.loadOnce(entry);
      } finally {
        const left = (this.waiting.get(entry.name) ?? 1) - 1;
        if (left > 0) this.waiting.set(entry.name, left);
        else this.waiting.delete(entry.name);
      }
      // Loop: the fresh model is now in `current` (or was retired meanwhile, then load again).
    }
  }

  /** The registry changed: models whose entry changed or vanished stop taking requests and go once idle. */
  retireChanged(entries: readonly ModelEntry[]): void {
    const byName = new Map(entries.map((e) => [e.name, e]));
    for (const [name, residency] of this.current) {
      const next = byName.get(name);
      if (!next || !sameEntry(next, residency.loaded.entry)) this.retire(residency);
    }
  }

  /** Unload now if idle, else as soon as the running requests end. */
  unload(name: string): void {
    const residency = this.current.get(name);
    if (residency) this.retire(residency);
  }

  loadedModels(): LoadedModelStatus[] {
    return [...this.current.values()].map(({ loaded, expiresAt }) => ({
      name: loaded.entry.name,
      sizeBytes: loaded.sizeBytes,
      expiresAt: expiresAt === undefined ? undefined : new Date(expiresAt).toISOString(),
      activeSequences: loaded.pool.inUse,
      queuedRequests: loaded.pool.waiting,
    }));
  }

  isLoaded(name: string): boolean {
    return this.current.has(name);
  }

  async disposeAll(): Promise<void> {
    const all = [...this.current.values(), ...this.retiring];
    this.current.clear();
    this.retiring.clear();
    for (const residency of all) clearTimeout(residency.expiryTimer);
    await Promise.all(all.map((r) => r.loaded.dispose()));
  }

  private lend(residency: Residency, keepAliveMs: number, loadMs: number): ModelUse {
    residency.users++;
    residency.lastUsedAt = Date.now();
    residency.keepAliveMs = keepAliveMs;
    clearTimeout(residency.expiryTimer);
    residency.expiresAt = undefined;
    let released = false;
    return {
      loaded: residency.loaded,
      loadMs,
      release: () => {
        if (released) return;
        released = true;
        residency.users--;
        residency.lastUsedAt = Date.now();
        if (residency.users > 0) return;
        if (residency.retired) void this.dispose(residency);
        else this.scheduleExpiry(residency);
      },
    };
  }

  /** One load per model at a time; everyone asking meanwhile waits for the same one. */
  private loadOnce(entry: ModelEntry): Promise<Residency> {
    let pending = this.loading.get(entry.name);
    if (!pending) {
      pending = this.load(entry);
      this.loading.set(entry.name, pending);
      const clear = () => this.loading.delete(entry.name);
      pending.then(clear, clear);
    }
    return pending;
  }

  private async load(entry: ModelEntry): Promise<Residency> {
    const { nlc, llama } = await this.options.runtime();
    const path = await resolveModelSource(entry, { cacheDir: this.options.cacheDir, hfEndpoint: this.options.hfEndpoint });
    let residency: Residency;
    try {
      const estimatedBytes = await estimateBytes(nlc, llama, path, entry);
      this.makeRoom(entry.name, estimatedBytes);
      this.reserved.set(entry.name, estimatedBytes);
      const loaded = await LoadedModel.load(nlc, llama, entry, path, this.options.defaultThreads);
      residency = { loaded, estimatedBytes, users: 0, lastUsedAt: Date.now(), keepAliveMs: entry.keepAliveMs, retired: false };
    } catch (error) {
      if (error instanceof LlamaportError) throw error;
      throw new LlamaportError("unavailable", `model "${entry.name}" failed to load: ${(error as Error).message}`, { cause: error });
    } finally {
      this.reserved.delete(entry.name);
    }
    this.options.log(`loaded model ${entry.name} in ${residency.loaded.loadMs.toFixed(0)} ms (${path})`);
    // No expiry yet: the requests waiting on this load take it next and schedule expiry when they release it.
    this.current.set(entry.name, residency);
    return residency;
  }

  /**
   * Unloads least-recently-used idle models until one more model of `bytes` fits under max_loaded_models and the
   * memory budget. The estimate comes from the GGUF header before anything is allocated, so an oversized model is a
   * clear error instead of an out-of-memory crash.
   */
  private makeRoom(incoming: string, bytes: number): void {
    const limit = this.options.maxLoadedModels();
    const setting = this.options.memoryBudget();
    const budget = setting === "auto" ? Math.max(0, totalmem() - 1024 ** 3) : setting;
    if (bytes > budget)
      throw new LlamaportError(
        "unavailable",
        `model "${incoming}" needs about ${formatByteSize(bytes)} of memory (weights and KV cache), more than the memory budget of ${formatByteSize(budget)}; lower its context or parallel, or raise memory_budget`,
      );
    const otherLoads = () => [...this.loading.keys()].filter((name) => name !== incoming).length;
    // Retiring models still hold their memory until their last request ends; loads in flight have reserved theirs.
    const used = () =>
      [...this.current.values(), ...this.retiring].reduce((sum, r) => sum + r.estimatedBytes, 0) +
      [...this.reserved.values()].reduce((sum, reserved) => sum + reserved, 0);
    for (;;) {
      const tooMany = this.current.size + otherLoads() >= limit;
      const tooBig = used() + bytes > budget;
      if (!tooMany && !tooBig) return;
      const victim = this.leastRecentlyUsedIdle(incoming);
      if (!victim)
        throw new LlamaportError(
          "busy",
          tooMany
            ? `cannot load model "${incoming}": ${this.current.size} models are loaded (max_loaded_models is ${limit}) and all are in use`
            : `cannot load model "${incoming}" (about ${formatByteSize(bytes)}): the loaded models use ${formatByteSize(used())} of the ${formatByteSize(budget)} memory budget and all are in use`,
          { retryAfter: 5 },
        );
      this.options.log(
        `unloading least recently used model ${victim.loaded.entry.name} to make room for ${incoming}${tooMany ? "" : " (memory budget)"}`,
      );
      this.retire(victim);
    }
  }

  /** The loaded model idle the longest, other than `except`; not one just loaded for requests still on their way to it. */
  private leastRecentlyUsedIdle(except: string): Residency | undefined {
    let victim: Residency | undefined;
    for (const residency of this.current.values()) {
      const name = residency.loaded.entry.name;
      if (residency.users > 0 || this.waiting.has(name) || name === except) continue;
      if (!victim || residency.lastUsedAt < victim.lastUsedAt) victim = residency;
    }
    return victim;
  }

  private retire(residency: Residency): void {
    residency.retired = true;
    clearTimeout(residency.expiryTimer);
    const name = residency.loaded.entry.name;
    if (this.current.get(name) === residency) this.current.delete(name);
    if (residency.users === 0) void this.dispose(residency);
    else this.retiring.add(residency);
  }

  private scheduleExpiry(residency: Residency): void {
    const { keepAliveMs } = residency;
    if (keepAliveMs < 0 || keepAliveMs > longestTimerMs) return;
    if (keepAliveMs === 0) {
      this.retire(residency);
      return;
    }
    residency.expiresAt = Date.now() + keepAliveMs;
    residency.expiryTimer = setTimeout(() => {
      this.options.log(`unloading model ${residency.loaded.entry.name}: idle for its keep_alive`);
      this.retire(residency);
    }, keepAliveMs);
    residency.expiryTimer.unref?.();
  }

  private async dispose(residency: Residency): Promise<void> {
    const { loaded } = residency;
    this.retiring.delete(residency);
    if (this.current.get(loaded.entry.name) === residency) this.current.delete(loaded.entry.name);
    loaded.pool.rejectWaiters(new LlamaportError("unavailable", `model "${loaded.entry.name}" was unloaded`, { retryAfter: 1 }));
    try {
      await loaded.dispose();
    } catch (error) {
      this.options.log(`error while unloading ${loaded.entry.name}: ${(error as Error).message}`);
    }
  }
}

/** Registry entries are plain data rebuilt on every reload: equal content means the loaded model is still right. */
function sameEntry(a: ModelEntry, b: ModelEntry): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

async function estimateBytes(nlc: NodeLlamaCppModule, llama: Llama, path: string, entry: ModelEntry): Promise<number> {
  const insights = await nlc.GgufInsights.from(await nlc.readGgufFileInfo(path), llama);
  const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
  const context = await insights.estimateContextResourceRequirementsV2({
    contextSize: entry.context, // per sequence: the estimate multiplies by `sequences` itself
    sequences: entry.parallel,
    modelGpuLayers: 0,
  });
  return model.cpuRam + context.cpuRam;
}
