/**
 * `GET /metrics` in Prometheus' text format (prom-client): HTTP requests, tokens, latencies, the engine's queues and
 * KV caches, loaded models and plugin reloads; plus the gauges the Gateway API Inference Extension's endpoint picker
 * reads from a model server, under vLLM's names (its default), so replicas can sit behind an InferencePool.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { EngineFacade, GenerationSummary, LoadedModelStatus } from "../engine/types.ts";
import type { RequestRecord } from "./RequestRecord.ts";

/** Process metrics (memory, CPU, open files, event loop lag) once per process, however many servers it runs. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const perTokenBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2.5];

export class ServerMetrics {
  readonly contentType: string;
  private readonly registry = new Registry();
  private readonly requests: Counter<"method" | "route" | "status">;
  private readonly requestSeconds: Histogram<"method" | "route">;
  private readonly promptTokens: Counter<"model">;
  private readonly generatedTokens: Counter<"model">;
  private readonly firstTokenSeconds: Histogram<"model">;
  private readonly perTokenSeconds: Histogram<"model">;
  private readonly pluginLoads: Counter<"plugin" | "result">;

  constructor(engine: Pick<EngineFacade, "loadedModels">) {
    const registers = [this.registry];
    this.contentType = this.registry.contentType;
    this.requests = new Counter({
      name: "llamaport_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: "llamaport_http_request_duration_seconds",
      help: "Time from a request's arrival to the end of its response (streams included)",
      labelNames: ["method", "route"],
      buckets: latencyBuckets,
      registers,
    });
    this.promptTokens = new Counter({
      name: "llamaport_prompt_tokens_total",
      help: "Prompt tokens of finished generations and embeddings (cached ones included)",
      labelNames: ["model"],
      registers,
    });
    this.generatedTokens = new Counter({
      name: "llamaport_generation_tokens_total",
      help: "Tokens generated",
      labelNames: ["model"],
      registers,
    });
    this.firstTokenSeconds = new Histogram({
      name: "llamaport_time_to_first_token_seconds",
      help: "Time from a generation's start in the engine (queue, model load and prompt included) to its first token",
      labelNames: ["model"],
      buckets: latencyBuckets,
      registers,
    });
    this.perTokenSeconds = new Histogram({
      name: "llamaport_time_per_output_token_seconds",
      help: "Mean time per generated token after the first, one observation per generation",
      labelNames: ["model"],
      buckets: perTokenBuckets,
      registers,
    });
    this.pluginLoads = new Counter({
      name: "llamaport_plugin_loads_total",
      help: "Plugin loads and hot reloads, by plugin and result (loaded, failed)",
      labelNames: ["plugin", "result"],
      registers,
    });
    this.engineGauges(engine, registers);
  }

  /** The text a scrape gets. */
  async render(): Promise<string> {
    return (await Registry.merge([processMetrics(), this.registry]).metrics()) as string;
  }

  /** A request ended (its response complete). */
  request(record: RequestRecord, durationMs: number): void {
    const route = record.route ?? "unmatched";
    this.requests.inc({ method: record.method, route, status: String(record.status) });
    this.requestSeconds.observe({ method: record.method, route }, durationMs / 1000);
  }

  /** A generation finished: its tokens and latencies (once per generation, never per token). */
  generation(summary: GenerationSummary): void {
    const labels = { model: summary.model };
    this.promptTokens.inc(labels, summary.promptTokens);
    if (summary.completionTokens === 0) return;
    this.generatedTokens.inc(labels, summary.completionTokens);
    const { totalMs, generateMs } = summary.timings;
    this.firstTokenSeconds.observe(labels, (totalMs - generateMs) / 1000);
    if (summary.completionTokens > 1) this.perTokenSeconds.observe(labels, generateMs / (summary.completionTokens - 1) / 1000);
  }

  embedding(model: string, promptTokens: number): void {
    this.promptTokens.inc({ model }, promptTokens);
  }

  pluginLoad(plugin: string, result: "loaded" | "failed"): void {
    this.pluginLoads.inc({ plugin, result });
  }

  /** Gauges read from the engine's neutral stats when scraped. */
  private engineGauges(engine: Pick<EngineFacade, "loadedModels">, registers: Registry[]): void {
    const perModel = (name: string, help: string, value: (status: LoadedModelStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["model"],
        registers,
        collect() {
          this.reset();
          for (const [model, sum] of sumByModel(engine.loadedModels(), value)) this.set({ model }, sum);
        },
      });
    perModel("llamaport_requests_queued", "Requests waiting for a free sequence", (s) => s.queuedRequests);
    perModel("llamaport_sequences_active", "Sequences generating now", (s) => s.activeSequences);
    perModel("llamaport_model_loaded", "Contexts in memory per model: 1, more with per-request context sizes", () => 1);
    perModel("llamaport_model_memory_bytes", "RAM estimated for a loaded model (weights, KV cache, buffers)", (s) => s.memoryBytes);
    perModel("llamaport_model_weights_bytes", "Size of a loaded model's weights file", (s) => s.sizeBytes);
    perModel("llamaport_kv_cache_tokens", "KV cache capacity in tokens (context x sequences)", (s) => s.kvCacheTokens);
    perModel("llamaport_kv_cache_used_tokens", "KV cache tokens held by running requests", (s) => s.kvCacheUsedTokens);
    const total = (name: string, help: string, value: (models: LoadedModelStatus[]) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(value(engine.loadedModels()));
        },
      });
    // The Gateway API Inference Extension's model server protocol (docs/proposals/003-model-server-protocol), with
    // vLLM's names: the endpoint picker's defaults. Server totals, over every loaded model.
    const sum = (models: LoadedModelStatus[], value: (s: LoadedModelStatus) => number) => models.reduce((n, s) => n + value(s), 0);
    const kvUsage = (models: LoadedModelStatus[]) => {
      const capacity = sum(models, (s) => s.kvCacheTokens);
      return capacity === 0 ? 0 : sum(models, (s) => s.kvCacheUsedTokens) / capacity;
    };
    total("vllm:num_requests_waiting", "Requests waiting for a free sequence, all models (TotalQueuedRequests)", (m) =>
      sum(m, (s) => s.queuedRequests),
    );
    total("vllm:num_requests_running", "Requests generating now, all models (TotalRunningRequests)", (m) =>
      sum(m, (s) => s.activeSequences),
    );
    total("vllm:kv_cache_usage_perc", "KV cache used by running requests, 0 to 1, all models (KVCacheUtilization)", kvUsage);
    total("vllm:gpu_cache_usage_perc", "The same as vllm:kv_cache_usage_perc, under the name older endpoint pickers read", kvUsage);
  }
}

/** A model may have several contexts loaded (per-request context sizes): one value per model. */
function sumByModel(models: LoadedModelStatus[], value: (status: LoadedModelStatus) => number): Map<string, number> {
  const sums = new Map<string, number>();
  for (const status of models) sums.set(status.name, (sums.get(status.name) ?? 0) + value(status));
  return sums;
}
