/**
 * Model lifecycle: lazy single-flight loading, LRU eviction under max_loaded_models and the memory budget, keep_alive
 * expiry, retiring on registry edits, and contexts of other sizes for requests that ask for one (sharing the weights).
 */
import type { Llama } from "node-llama-cpp";
import { type FSWatcher, watch } from "node:fs";
import { totalmem } from "node:os";
import { basename, dirname } from "node:path";
import { formatByteSize } from "../config/byteSize.ts";
import type { ModelEntry } from "../config/loadModelsFile.ts";
import { LlamaportError } from "./EngineError.ts";
import { LoadedModel } from "./LoadedModel.ts";
import { ModelWeights } from "./ModelWeights.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";
import { resolveModelSource, type SourceOptions } from "./resolveModelSource.ts";
import type { ThreadBudget } from "./ThreadBudget.ts";
import type { LoadedModelStatus } from "./types.ts";

export interface ModelManagerOptions {
  runtime(): Promise<{ nlc: NodeLlamaCppModule; llama: Llama }>;
  maxLoadedModels(): number;
  /** The registry's entry for a name now (it may have changed since a request resolved it). */
  currentEntry(name: string): ModelEntry | undefined;
  /** Bytes of RAM models may take together, or "auto" (total RAM minus a reserve for everything else). */
  memoryBudget(): "auto" | number;
  defaultThreads: number;
  /** Limits the decode threads of models without a fixed `threads` to the cores other programs leave free. */
  threadBudget?: ThreadBudget;
  /** Where model files are written and downloaded to, and how. */
  source: SourceOptions;
  /** A model file's weights were unloaded (no context of it is left). */
  onUnload?(modelPath: string): void;
  /** Loading a model's weights: the fraction done (0 to 1), as often as node-llama-cpp reports it. */
  onLoadProgress?(model: string, fraction: number): void;
  log(message: string): void;
}

/** A model lent to one request. Call `release()` exactly once, in a `finally`. */
export interface ModelUse {
  loaded: LoadedModel;
  /** How long this request waited for the model to load. */
  loadMs: number;
  release(): void;
}

/**
 * What the manager knows about one loaded context of a model; only the manager reads or writes it. A model has one
 * residency for its `context` (keyed by its name) and may have more for larger per-request sizes (`name@size`), all
 * sharing one `ModelWeights`.
 */
interface Residency {
  readonly key: string;
  readonly loaded: LoadedModel;
  readonly weights: ModelWeights;
  /** RAM estimated from the GGUF before loading for this context (KV cache, buffers), for the memory budget. */
  readonly contextBytes: number;
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
  /** The file of each set of weights in memory, watched for changes (see `fileChanged`). */
  private readonly watchers = new Map<ModelWeights, FSWatcher>();

  constructor(private readonly options: ModelManagerOptions) {}

  /**
   * Get a loaded model for a request, loading it if needed. With `contextSize`, the request runs in that many tokens:
   * on a loaded context at least that large (the model's own when it is), else on a new context of that size that
   * shares the weights (`LoadedModel.windowFor` keeps the request to its size).
   */
  async use(entry: ModelEntry, keepAliveMs?: number, contextSize?: number): Promise<ModelUse> {
    const started = performance.now();
    const wanted = Math.max(contextSize ?? entry.context, 1);
    for (;;) {
      // A models.yaml edit that landed while this model was loading: the loaded one has an outdated entry.
      const latest = this.options.currentEntry(entry.name);
      for (const residency of this.residenciesOf(entry.name))
        if (latest && !sameEntry(residency.loaded.entry, latest)) this.retire(residency);
      const ready = this.smallestFitting(entry.name, wanted);
      if (ready) return this.lend(ready, keepAliveMs ?? entry.keepAliveMs, performance.now() - started);
      const size = Math.max(wanted, entry.context);
      const key = size === entry.context ? entry.name : `${entry.name}@${size}`;
      this.waiting.set(key, (this.waiting.get(key) ?? 0) + 1);
      try {
        await this.loadOnce(entry, key, size);
      } finally {
        const left = (this.waiting.get(key) ?? 1) - 1;
        if (left > 0) this.waiting.set(key, left);
        else this.waiting.delete(key);
      }
      // Loop: the fresh context is now in `current` (or was retired meanwhile, then load again).
    }
  }

  /** The registry changed: models whose entry changed or vanished stop taking requests and go once idle. */
  retireChanged(entries: readonly ModelEntry[]): void {
    const byName = new Map(entries.map((e) => [e.name, e]));
    for (const residency of [...this.current.values()]) {
      const next = byName.get(residency.loaded.entry.name);
      if (!next || !sameEntry(next, residency.loaded.entry)) this.retire(residency);
    }
  }

  /** Unload now if idle, else as soon as the running requests end (every context size of the model). */
  unload(name: string): void {
    for (const residency of this.residenciesOf(name)) this.retire(residency);
  }

  loadedModels(): LoadedModelStatus[] {
    const counted = new Set<ModelWeights>();
    return [...this.current.values()].map(({ loaded, expiresAt, weights, contextBytes }) => {
      // Weights shared by several contexts of a model count once, with the first.
      const weightBytes = counted.has(weights) ? 0 : weights.estimatedBytes;
      counted.add(weights);
      return {
        name: loaded.entry.name,
        sizeBytes: loaded.sizeBytes,
        contextSize: loaded.contextSize,
        expiresAt: expiresAt === undefined ? undefined : new Date(expiresAt).toISOString(),
        activeSequences: loaded.pool.inUse,
        queuedRequests: loaded.pool.waiting,
        sequences: loaded.pool.sequences.map((sequence, id) => ({
          id,
          busy: !loaded.pool.isFree(sequence),
          contextSize: sequence.contextSize,
          cachedTokens: sequence.nextTokenIndex,
        })),
        kvCacheTokens: loaded.contextSize * loaded.pool.sequences.length,
        kvCacheUsedTokens: loaded.pool.usedTokens,
        memoryBytes: contextBytes + weightBytes,
      };
    });
  }

  isLoaded(name: string): boolean {
    return this.residenciesOf(name).length > 0;
  }

  /** Answers every request waiting for a sequence, on every model, with `error` (shutting down). */
  rejectQueued(error: unknown): void {
    for (const residency of [...this.current.values(), ...this.retiring]) residency.loaded.pool.rejectWaiters(error);
  }

  async disposeAll(): Promise<void> {
    const all = [...this.current.values(), ...this.retiring];
    this.current.clear();
    this.retiring.clear();
    for (const residency of all) clearTimeout(residency.expiryTimer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
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

  /** One load per context at a time; everyone asking meanwhile waits for the same one. */
  private loadOnce(entry: ModelEntry, key: string, contextSize: number): Promise<Residency> {
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.load(entry, key, contextSize);
      this.loading.set(key, pending);
      const clear = () => this.loading.delete(key);
      pending.then(clear, clear);
    }
    return pending;
  }

  private async load(entry: ModelEntry, key: string, contextSize: number): Promise<Residency> {
    const started = performance.now();
    const { nlc, llama } = await this.options.runtime();
    let path: string;
    try {
      path = await resolveModelSource(entry, this.options.source);
    } catch (error) {
      const cause = (error as Error).cause;
      this.options.log(`model ${entry.name}: ${(error as Error).message}${cause instanceof Error ? ` (${cause.message})` : ""}`);
      throw error;
    }
    let residency: Residency;
    try {
      const estimate = await estimateBytes(nlc, llama, path, entry, contextSize);
      // Another context of this model (same entry) already holds the weights: only the new context needs room.
      const shared = this.residenciesOf(entry.name).find((r) => sameEntry(r.loaded.entry, entry) && !r.weights.isDisposed)?.weights;
      // Held while room is made: unloading an idle context of this model to make room must not unload its weights.
      shared?.retain();
      let loaded: LoadedModel;
      try {
        const bytes = estimate.context + (shared ? 0 : estimate.weights);
        this.makeRoom(entry.name, key, bytes, !shared);
        this.reserved.set(key, bytes);
        const weights = shared ?? this.watched(await ModelWeights.load(llama, entry, path, estimate.weights, this.progressOf(entry.name)));
        loaded = await LoadedModel.load(nlc, entry, weights, {
          defaultThreads: this.options.defaultThreads,
          threadBudget: this.options.threadBudget,
          contextSize,
          startedAt: started,
        });
      } finally {
        await shared?.release();
      }
      residency = {
        key,
        loaded,
        weights: loaded.weights,
        contextBytes: estimate.context,
        users: 0,
        lastUsedAt: Date.now(),
        keepAliveMs: entry.keepAliveMs,
        retired: false,
      };
    } catch (error) {
      if (error instanceof LlamaportError) throw error;
      this.options.log(`model ${entry.name} failed to load from ${path}: ${(error as Error).message}`);
      // node-llama-cpp's messages name the file: clients see its name only, the log has the whole path.
      const message = (error as Error).message.replaceAll(path, basename(path)).replaceAll(dirname(path), "…");
      throw new LlamaportError("unavailable", `model "${entry.name}" failed to load: ${message}`, { cause: error });
    } finally {
      this.reserved.delete(key);
    }
    const what = key === entry.name ? "" : ` with a ${residency.loaded.contextSize}-token context`;
    this.options.log(`loaded model ${entry.name}${what} in ${residency.loaded.loadMs.toFixed(0)} ms (${path})`);
    // No expiry yet: the requests waiting on this load take it next and schedule expiry when they release it.
    this.current.set(key, residency);
    return residency;
  }

  private progressOf(model: string): ((fraction: number) => void) | undefined {
    const report = this.options.onLoadProgress;
    return report && ((fraction) => report(model, fraction));
  }

  /** Every loaded context of a model (current ones; retiring ones take no requests). */
  private residenciesOf(name: string): Residency[] {
    return [...this.current.values()].filter((r) => r.loaded.entry.name === name);
  }

  /** The smallest loaded context of a model made for at least `tokens`: a request never needs a larger one. */
  private smallestFitting(name: string, tokens: number): Residency | undefined {
    let best: Residency | undefined;
    for (const residency of this.residenciesOf(name)) {
      if (residency.loaded.isDisposed || residency.loaded.requestedContext < tokens) continue;
      if (!best || residency.loaded.requestedContext < best.loaded.requestedContext) best = residency;
    }
    return best;
  }

  /**
   * Unloads least-recently-used idle models until one more model of `bytes` fits under max_loaded_models and the
   * memory budget. The estimate comes from the GGUF header before anything is allocated, so an oversized model is a
   * clear error instead of an out-of-memory crash.
   */
  private makeRoom(incoming: string, incomingKey: string, bytes: number, newModel: boolean): void {
    const limit = this.options.maxLoadedModels();
    const setting = this.options.memoryBudget();
    const budget = setting === "auto" ? Math.max(0, totalmem() - 1024 ** 3) : setting;
    if (bytes > budget)
      throw new LlamaportError(
        "unavailable",
        `model "${incoming}" needs about ${formatByteSize(bytes)} of memory (weights and KV cache), more than the memory budget of ${formatByteSize(budget)}; lower its context or parallel, or raise memory_budget`,
      );
    // Models, not contexts, count against max_loaded_models: other context sizes of a loaded model share its weights.
    const models = () => new Set([...this.current.values()].map((r) => r.loaded.entry.name));
    const otherLoads = () =>
      new Set([...this.loading.keys()].map(modelOfKey).filter((name) => name !== incoming && !models().has(name))).size;
    for (;;) {
      const loadedModels = models();
      const count = loadedModels.size + otherLoads() + (newModel && !loadedModels.has(incoming) ? 1 : 0);
      const tooMany = count > limit;
      const tooBig = this.usedBytes() + bytes > budget;
      if (!tooMany && !tooBig) return;
      // Too many models: only another model's going helps. Too little memory: an idle context of this model helps too.
      const victim = this.leastRecentlyUsedIdle(tooMany ? incoming : undefined, incomingKey);
      if (!victim)
        throw new LlamaportError(
          "busy",
          tooMany
            ? `cannot load model "${incoming}": ${loadedModels.size} models are loaded (max_loaded_models is ${limit}) and all are in use`
            : `cannot load model "${incoming}" (about ${formatByteSize(bytes)}): the loaded models use ${formatByteSize(this.usedBytes())} of the ${formatByteSize(budget)} memory budget and all are in use`,
          { retryAfter: 5 },
        );
      this.options.log(
        `unloading least recently used model ${victim.loaded.entry.name} to make room for ${incoming}${tooMany ? "" : " (memory budget)"}`,
      );
      // Unloading one context of a model does not bring its count down while another context keeps its weights.
      for (const residency of tooMany ? this.residenciesOf(victim.loaded.entry.name) : [victim]) this.retire(residency);
    }
  }

  /** Memory held now: each context, each set of weights once, loads in flight; retiring ones until their requests end. */
  private usedBytes(): number {
    const residencies = [...this.current.values(), ...this.retiring];
    const weights = new Set(residencies.map((r) => r.weights));
    return (
      residencies.reduce((sum, r) => sum + r.contextBytes, 0) +
      [...weights].reduce((sum, w) => sum + (w.isDisposed ? 0 : w.estimatedBytes), 0) +
      [...this.reserved.values()].reduce((sum, reserved) => sum + reserved, 0)
    );
  }

  /**
   * The loaded context idle the longest, not of model `exceptModel` (when given) nor the one being loaded (`exceptKey`),
   * and not one just loaded for requests still on their way to it.
   */
  private leastRecentlyUsedIdle(exceptModel: string | undefined, exceptKey: string): Residency | undefined {
    let victim: Residency | undefined;
    for (const residency of this.current.values()) {
      const { key } = residency;
      if (residency.users > 0 || this.waiting.has(key) || key === exceptKey || residency.loaded.entry.name === exceptModel) continue;
      if (!victim || residency.lastUsedAt < victim.lastUsedAt) victim = residency;
    }
    return victim;
  }

  private retire(residency: Residency): void {
    residency.retired = true;
    clearTimeout(residency.expiryTimer);
    if (this.current.get(residency.key) === residency) this.current.delete(residency.key);
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
    const { loaded, weights } = residency;
    this.retiring.delete(residency);
    if (this.current.get(residency.key) === residency) this.current.delete(residency.key);
    loaded.pool.rejectWaiters(new LlamaportError("unavailable", `model "${loaded.entry.name}" was unloaded`, { retryAfter: 1 }));
    try {
      await loaded.dispose();
    } catch (error) {
      this.options.log(`error while unloading ${loaded.entry.name}: ${(error as Error).message}`);
    }
    if (weights.isDisposed && this.watchers.has(weights)) {
      this.watchers.get(weights)?.close();
      this.watchers.delete(weights);
      this.options.onUnload?.(weights.modelPath);
    }
  }

  /**
   * Watches the file of newly loaded weights. A GGUF replaced in place (`cp new.gguf model.gguf`) under memory-mapped
   * weights makes the next read of a page past the new end of the file kill the process (SIGBUS). So when the file
   * changes: no new requests go to any context of these weights (the next one loads the file again), and, if they are
   * mapped, the running ones stop at once and end with an error; read into memory (`use_mmap: false`) they finish.
   */
  private watched(weights: ModelWeights): ModelWeights {
    try {
      this.watchers.set(
        weights,
        watch(weights.modelPath, { persistent: false }, () => this.fileChanged(weights)),
      );
    } catch (error) {
      this.options.log(`cannot watch ${weights.modelPath} for changes: ${(error as Error).message}`);
    }
    return weights;
  }

  private fileChanged(weights: ModelWeights): void {
    const residencies = [...this.current.values()].filter((r) => r.weights === weights);
    if (residencies.length === 0 || weights.fileChanged.aborted) return;
    const name = residencies[0]!.loaded.entry.name;
    const mapped = weights.mapsFile;
    this.options.log(
      `model ${name}: its file changed on disk; ${mapped ? "stopping its running requests and " : ""}unloading it, it loads again on next use`,
    );
    if (mapped) weights.stopForFileChange();
    for (const residency of residencies) {
      residency.loaded.pool.rejectWaiters(
        new LlamaportError("unavailable", `model "${name}" changed on disk; try again`, { retryAfter: 1 }),
      );
      this.retire(residency);
    }
  }
}

/** Registry entries are plain data rebuilt on every reload: equal content means the loaded model is still right. */
function sameEntry(a: ModelEntry, b: ModelEntry): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** The model's name in a residency key (`name` or `name@contextSize`). */
function modelOfKey(key: string): string {
  const at = key.lastIndexOf("@");
  return at > 0 && /^\d+$/.test(key.slice(at + 1)) ? key.slice(0, at) : key;
}

/** RAM for the weights and for a context of `contextSize` tokens per sequence, estimated from the GGUF before loading. */
async function estimateBytes(
  nlc: NodeLlamaCppModule,
  llama: Llama,
  path: string,
  entry: ModelEntry,
  contextSize: number,
): Promise<{ weights: number; context: number }> {
  const insights = await nlc.GgufInsights.from(await nlc.readGgufFileInfo(path), llama);
  const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
  const context = await insights.estimateContextResourceRequirementsV2({
    contextSize, // per sequence: the estimate multiplies by `sequences` itself
    sequences: entry.parallel,
    modelGpuLayers: 0,
  });
  return { weights: model.cpuRam, context: context.cpuRam };
}
