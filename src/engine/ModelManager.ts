/** Model lifecycle: lazy single-flight loading, LRU eviction under max_loaded_models, keep_alive expiry, and retiring on registry edits. */
import type { Llama } from "node-llama-cpp";
import { totalmem } from "node:os";
import { formatByteSize } from "../config/byteSize.ts";
import { parseDuration } from "../config/duration.ts";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { LlamaportError } from "./EngineError.ts";
import { LoadedModel } from "./LoadedModel.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { resolveModelSource } from "./resolveModelSource.ts";

export interface ModelManagerOptions {
  runtime(): Promise<{ nlc: NodeLlamaCppModule; llama: Llama }>;
  maxLoadedModels(): number;
  /** The registry's entry for a name now (it may have changed since a request resolved it). */
  currentEntry(name: string): ModelEntry | undefined;
  /** Bytes of RAM models may take together, or "auto" (total RAM minus a reserve for everything else). */
  memoryBudget(): "auto" | number;
  defaultThreads: number;
  cacheDir?: string;
  log(message: string): void;
}

/** A model lent to one request; `loadMs` is how long this request waited for it to load. */
export interface ModelUse {
  loaded: LoadedModel;
  loadMs: number;
}

export class ModelManager {
  private readonly current = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private readonly retiring = new Set<LoadedModel>();
  /** Requests waiting for a model that is loading: a fresh model is pinned for them, never evicted before they get it. */
  private readonly waiting = new Map<string, number>();
  /** Memory reserved by loads in flight, so two loads at once cannot both squeeze under the budget. */
  private readonly reserved = new Map<string, number>();

  constructor(private readonly options: ModelManagerOptions) {}

  /** Get a loaded model for a request, loading it if needed. Pair with `release()`. */
  async use(entry: ModelEntry, keepAlive?: string | number): Promise<ModelUse> {
    const started = performance.now();
    const keepAliveMs = keepAlive === undefined ? undefined : parseKeepAlive(keepAlive);
    for (;;) {
      const ready = this.current.get(entry.name);
      // A models.yaml edit that landed while this model was loading: the loaded one has an outdated entry.
      const latest = this.options.currentEntry(entry.name);
      if (ready && latest && !sameEntry(ready.entry, latest)) this.retire(ready);
      else if (ready && !ready.retired && !ready.isDisposed) {
        ready.users++;
        ready.lastUsedAt = Date.now();
        clearTimeout(ready.expiryTimer);
        ready.expiresAt = undefined;
        ready.keepAliveMs = keepAliveMs ?? entry.keepAliveMs;
        return { loaded: ready, loadMs: performance.now() - started };
      }
      let pending = this.loading.get(entry.name);
      if (!pending) {
        pending = this.load(entry);
        this.loading.set(entry.name, pending);
        const clear = () => this.loading.delete(entry.name);
        pending.then(clear, clear);
      }
      this.waiting.set(entry.name, (this.waiting.get(entry.name) ?? 0) + 1);
      try {
        await pending;
      } finally {
        const left = this.waiting.get(entry.name)! - 1;
        if (left > 0) this.waiting.set(entry.name, left);
        else this.waiting.delete(entry.name);
      }
      // Loop: the fresh model is now in `current` (or was retired meanwhile, then load again).
    }
  }

  release(loaded: LoadedModel): void {
    loaded.users--;
    loaded.lastUsedAt = Date.now();
    if (loaded.users > 0) return;
    if (loaded.retired) return void this.dispose(loaded);
    this.scheduleExpiry(loaded);
  }

  /** The registry changed: models whose entry changed or vanished stop taking requests and go once idle. */
  retireChanged(entries: readonly ModelEntry[]): void {
    const byName = new Map(entries.map((e) => [e.name, e]));
    for (const [name, loaded] of this.current) {
      const next = byName.get(name);
      if (next && sameEntry(next, loaded.entry)) continue;
      this.retire(loaded);
    }
  }

  /** Unload now if idle, else as soon as the running requests end. */
  async unload(name: string): Promise<void> {
    const loaded = this.current.get(name);
    if (loaded) this.retire(loaded);
  }

  loadedModels(): { name: string; expiresAt?: string; sizeBytes: number }[] {
    return [...this.current.values()].map((m) => ({
      name: m.entry.name,
      sizeBytes: m.sizeBytes,
      expiresAt: m.expiresAt === undefined ? undefined : new Date(m.expiresAt).toISOString(),
    }));
  }

  isLoaded(name: string): boolean {
    return this.current.has(name);
  }

  async disposeAll(): Promise<void> {
    const all = [...this.current.values(), ...this.retiring];
    this.current.clear();
    this.retiring.clear();
    await Promise.all(all.map((m) => m.dispose()));
  }

  private async load(entry: ModelEntry): Promise<LoadedModel> {
    this.makeRoom(entry.name);
    const { nlc, llama } = await this.options.runtime();
    const path = await resolveModelSource(entry, this.options.cacheDir);
    let loaded: LoadedModel;
    try {
      const estimate = await estimateBytes(nlc, llama, path, entry);
      this.makeRoomInMemory(entry.name, estimate);
      this.reserved.set(entry.name, estimate);
      loaded = await LoadedModel.load(nlc, llama, entry, path, this.options.defaultThreads);
      loaded.estimatedBytes = estimate;
    } catch (error) {
      if (error instanceof LlamaportError) throw error;
      throw new LlamaportError("unavailable", `model "${entry.name}" failed to load: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      this.reserved.delete(entry.name);
    }
    this.options.log(`loaded model ${entry.name} in ${loaded.loadMs.toFixed(0)} ms (${path})`);
    // No expiry yet: the requests waiting on this load take it next and schedule expiry when they release it.
    this.current.set(entry.name, loaded);
    return loaded;
  }

  /** Unload least-recently-used idle models until one more fits under max_loaded_models. */
  private makeRoom(incoming: string): void {
    const limit = this.options.maxLoadedModels();
    while (this.current.size + this.loading.size >= limit) {
      let victim: LoadedModel | undefined;
      for (const m of this.current.values())
        if (this.evictable(m) && m.entry.name !== incoming && (!victim || m.lastUsedAt < victim.lastUsedAt)) victim = m;
      if (!victim)
        throw new LlamaportError(
          "busy",
          `cannot load model "${incoming}": ${this.current.size} models are loaded (max_loaded_models is ${limit}) and all are in use`,
          { retryAfter: 5 },
        );
      this.options.log(`unloading least recently used model ${victim.entry.name} to make room for ${incoming}`);
      this.retire(victim);
    }
  }

  /**
   * Unload least-recently-used idle models until `bytes` more fit in the memory budget. The estimate comes from the
   * GGUF header (weights + KV cache for every sequence), before anything is allocated, so an oversized model is a
   * clear error instead of an out-of-memory crash.
   */
  private makeRoomInMemory(incoming: string, bytes: number): void {
    const setting = this.options.memoryBudget();
    const budget = setting === "auto" ? Math.max(0, totalmem() - 1024 ** 3) : setting;
    if (bytes > budget)
      throw new LlamaportError(
        "unavailable",
        `model "${incoming}" needs about ${formatByteSize(bytes)} of memory (weights and KV cache), more than the memory budget of ${formatByteSize(budget)}; lower its context or parallel, or raise memory_budget`,
      );
    // Retiring models still hold their memory until their last request ends; loads in flight have reserved theirs.
    const used = () =>
      [...this.current.values(), ...this.retiring].reduce((sum, m) => sum + m.estimatedBytes, 0) +
      [...this.reserved.values()].reduce((sum, bytes) => sum + bytes, 0);
    while (used() + bytes > budget) {
      let victim: LoadedModel | undefined;
      for (const m of this.current.values()) if (this.evictable(m) && (!victim || m.lastUsedAt < victim.lastUsedAt)) victim = m;
      if (!victim)
        throw new LlamaportError(
          "busy",
          `cannot load model "${incoming}" (about ${formatByteSize(bytes)}): the loaded models use ${formatByteSize(used())} of the ${formatByteSize(budget)} memory budget and all are in use`,
          { retryAfter: 5 },
        );
      this.options.log(`unloading least recently used model ${victim.entry.name} to free memory for ${incoming}`);
      this.retire(victim);
    }
  }

  /** Idle and not just loaded for requests still on their way to it. */
  private evictable(loaded: LoadedModel): boolean {
    return loaded.users === 0 && !this.waiting.has(loaded.entry.name);
  }

  private retire(loaded: LoadedModel): void {
    loaded.retired = true;
    if (this.current.get(loaded.entry.name) === loaded) this.current.delete(loaded.entry.name);
    if (loaded.users === 0) void this.dispose(loaded);
    else this.retiring.add(loaded);
  }

  private scheduleExpiry(loaded: LoadedModel): void {
    clearTimeout(loaded.expiryTimer);
    loaded.expiresAt = undefined;
    // setTimeout cannot wait past 2^31-1 ms (~24.8 days): anything longer is as good as "never".
    if (loaded.users > 0 || loaded.keepAliveMs < 0 || loaded.keepAliveMs > 2 ** 31 - 1) return;
    if (loaded.keepAliveMs === 0) return this.retire(loaded);
    loaded.expiresAt = Date.now() + loaded.keepAliveMs;
    loaded.expiryTimer = setTimeout(() => {
      if (loaded.users === 0) {
        this.options.log(`unloading model ${loaded.entry.name}: idle for its keep_alive`);
        this.retire(loaded);
      }
    }, loaded.keepAliveMs);
    loaded.expiryTimer.unref?.();
  }

  private async dispose(loaded: LoadedModel): Promise<void> {
    this.retiring.delete(loaded);
    if (this.current.get(loaded.entry.name) === loaded) this.current.delete(loaded.entry.name);
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

function parseKeepAlive(value: string | number): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new LlamaportError("invalid_request", `invalid keep_alive: ${(error as Error).message}`, { param: "keep_alive" });
  }
}
