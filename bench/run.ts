// `bun run bench`: llamaport against llama.cpp's llama-server (same llama.cpp source, model, threads, context, sampling) in five scenarios; prints ratios and writes bench/results.md.
import { execSync } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, closeSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import type { Token } from "node-llama-cpp";
import { defaultCacheDir } from "../src/config/environment.ts";
import { ensureSyntheticModel } from "../src/gguf/syntheticModels.ts";
import type { ModelEntry } from "../src/config/loadModelsFile.ts";
import { threadsFor } from "../src/engine/LoadedModel.ts";
import { getLlamaRuntime, importNodeLlamaCpp } from "../src/engine/nodeLlamaCpp.ts";
import { physicalCores } from "../src/engine/physicalCores.ts";
import { startLlamaport, type RunningLlamaport } from "../src/server/startLlamaport.ts";
import { BackgroundLoad } from "./backgroundLoad.ts";
import { ensureLlamaServer, type LlamaServerBuild } from "./buildLlamaServer.ts";
import { DecodeCounter, type DecodeCounts } from "./decodeCounter.ts";

// ---------------------------------------------------------------------------------------------------------------------
// Options

/**
 * tiny: the writer's demo model (1000-token vocabulary); tiny32k: the same shape with a real-size (llama-2-like) 32k
 * vocabulary; smollm: SmolLM2-135M's shape, 32k vocabulary; cycle: the smollm shape with weights that continue their
 * own text (the writer's `cycle` models), for scenario 6 only.
 */
const MODEL_KEYS = ["tiny", "tiny32k", "smollm", "cycle"] as const;
type ModelKey = (typeof MODEL_KEYS)[number];
const PRESETS: Record<ModelKey, string> = { tiny: "demo", tiny32k: "tiny-32k", smollm: "smollm2-135m", cycle: "smollm2-135m-cycle" };
/** A fixed thread count on both sides, or each side's default (llamaport: its thread policy; llama-server: no -t). */
type Threads = number | "default";

interface Options {
  quick: boolean;
  models: ModelKey[];
  scenarios: Set<number>;
  threads: Threads[];
  /** Busy processes kept running while measuring (fractions: one more process busy that share of the time). */
  backgroundLoad: number;
  out: string | undefined;
}

const ALL_SCENARIOS = [1, 2, 3, 4, 5, 6];

function parseOptions(argv: string[]): Options {
  const options: Options = {
    quick: false,
    models: ["tiny", "tiny32k", "smollm", "cycle"],
    scenarios: new Set(ALL_SCENARIOS),
    threads: [1, 2, "default"],
    backgroundLoad: 0,
    out: resolve(import.meta.dir, "results.md"),
  };
  let modelsGiven = false;
  let threadsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg} needs a value`);
      return next;
    };
    if (arg === "--quick") options.quick = true;
    else if (arg === "--model") {
      const v = value();
      modelsGiven = true;
      if (v === "both") options.models = ["tiny", "smollm"];
      else if (v === "all") options.models = [...MODEL_KEYS];
      else {
        const keys = v.split(",").map((k) => k.trim());
        for (const key of keys)
          if (!(MODEL_KEYS as readonly string[]).includes(key))
            throw new Error(`--model takes ${MODEL_KEYS.join(", ")}, both or all, not ${key}`);
        options.models = keys as ModelKey[];
      }
    } else if (arg === "--scenarios") {
      options.scenarios = new Set(
        value()
          .split(",")
          .map((s) => Number(s.trim())),
      );
      for (const s of options.scenarios) if (!ALL_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}`);
    } else if (arg === "--threads") {
      threadsGiven = true;
      options.threads = value()
        .split(",")
        .map((s) => (s.trim() === "default" ? "default" : Number(s.trim())));
      if (options.threads.some((t) => t !== "default" && (!Number.isInteger(t) || t < 1)))
        throw new Error("--threads takes e.g. 1,2,default");
    } else if (arg === "--background-load") {
      options.backgroundLoad = Number(value());
      if (!(options.backgroundLoad >= 0)) throw new Error("--background-load takes a number of busy processes, e.g. 1 or 2.5");
    } else if (arg === "--out") {
      const v = value();
      options.out = v === "-" ? undefined : resolve(v);
    } else if (arg === "--help" || arg === "-h") {
      console.log(
        "bun run bench [--quick] [--model tiny,tiny32k,smollm,cycle|both|all] [--scenarios 1,2,3,4,5,6] [--threads 1,2,default]\n" +
          "              [--background-load N] [--out file|-]\n" +
          "  --quick              the default threads only, fewer repetitions, models tiny, smollm and cycle (under 3 minutes\n" +
          "                       once llama-server is built; the first build takes 20-60 minutes on 2 cores)\n" +
          "  --threads            thread settings to compare; default = each side's own default (llamaport: its thread\n" +
          "                       policy, llama-server: no -t); with default and fixed counts, a table compares them\n" +
          "  --background-load N  keep N busy processes running while measuring (2.5: two, and one busy half the time)\n" +
          "  --out -              do not write bench/results.md",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (try --help)`);
  }
  if (options.quick && !modelsGiven) options.models = ["tiny", "smollm", "cycle"];
  if (options.quick && !threadsGiven) options.threads = ["default"];
  return options;
}

const options = parseOptions(process.argv.slice(2));
/** Counts the in-process llamaport's decode steps (installed once the engine has started, before any model loads). */
const decodeCounter = new DecodeCounter();

/** Shared by both servers; per-slot context equal on both sides (llama-server divides -c by -np). */
const CONTEXT = 2048;
const PARALLEL = 4;
const S1_TOKENS = 256;
const S2_TOKENS = 256;
const S3_CLIENTS = 16;
const S3_TOKENS = options.quick ? 64 : 128;
/**
 * The synthetic vocabularies split words into several pieces (~3-4 tokens a word), while the
 * model generates whole-word tokens; so a generated answer re-tokenizes into 2-4x as many tokens that match nothing
 * cached, on both servers alike. A short answer and a ~1000-token system message keep turn 2 what it is in real chats:
 * mostly the conversation so far, plus a little new text.
 */
const S4_TURN1_TOKENS = 16;
const SYSTEM_WORDS = 250;
const S4_TURN2_TOKENS = 4;
const S5_TOKENS = 256;
const S6_TOKENS = 256;
const REPS = {
  s1: options.quick ? 2 : 5,
  s2: options.quick ? 1 : 3,
  s3: 1,
  s4: options.quick ? 2 : 3,
  s5: options.quick ? 2 : 5,
  s6: options.quick ? 1 : 3,
};

/**
 * The same sampling for every request on both servers. Temperature 0 is greedy in both (node-llama-cpp uses its
 * greedy sampler; llama-server's temperature sampler keeps only the top logit); top_k/top_p/min_p are llama-server's
 * defaults and llamaport's, sent explicitly so neither side falls back to something else. No repeat penalty on either.
 */
const SAMPLING = { temperature: 0, top_k: 40, top_p: 0.95, min_p: 0.05, seed: 42, ignore_eos: true } as const;

// ---------------------------------------------------------------------------------------------------------------------
// Deterministic prompts made of words the synthetic vocabulary holds whole (so token counts stay close to word counts)

const WORDS = (
  "the of and to in is it you that he was for on are with as his they be at one have this from or had by hot word " +
  "but what some we can out other were all there when up use your how said an each she which do their time if will " +
  "way about many then them write would like so these her long make thing see him two has look more day could go " +
  "come did number sound no most people my over know water than call first who may down side been now find any new " +
  "work part take get place made live where after back little only round man year came show every good me give our"
).split(" ");

function words(seed: number, count: number): string {
  // A small LCG: reproducible across runs and machines, unlike Math.random.
  let state = (seed * 2654435761 + 12345) >>> 0;
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out.push(WORDS[state % WORDS.length]!);
  }
  return out.join(" ");
}

/** A short prompt, distinct per call so neither server can reuse a cached prefix beyond the first token. */
const shortPrompt = (seed: number) => `Story ${seed}: ${words(seed, 24)}`;

// ---------------------------------------------------------------------------------------------------------------------
// HTTP client: one streamed request, timing the first non-empty text and the end

interface Target {
  name: "llamaport" | "llama-server";
  url: string;
  model: string;
  /** Fields only one server understands (llama-server's cache_prompt). */
  extra: Record<string, unknown>;
}

interface StreamResult {
  ttftMs: number;
  totalMs: number;
  text: string;
  completionTokens?: number;
  promptTokens?: number;
  cachedTokens?: number;
}

/**
 * POST with one retry when the connection dies before any response. llama-server (cpp-httplib) closes a keep-alive
 * connection after 100 requests, and a pooled connection that the server is closing just as the client reuses it ends
 * in ECONNRESET without the request having been processed; the retry restarts the clock (onRetry).
 */
async function post(url: string, body: string, onRetry: () => void): Promise<Response> {
  const init = { method: "POST", headers: { "content-type": "application/json" }, body };
  try {
    return await fetch(url, init);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== "ECONNRESET" && code !== "ConnectionClosed" && code !== "ECONNREFUSED") throw error;
    onRetry();
    return await fetch(url, init);
  }
}

function firstText(payload: any): string | undefined {
  const choice = payload?.choices?.[0];
  if (!choice) return undefined;
  const text = choice.text ?? choice.delta?.content;
  return typeof text === "string" && text.length > 0 ? text : undefined;
}

function readUsage(payload: any, result: StreamResult): void {
  const usage = payload?.usage;
  if (usage && typeof usage === "object") {
    result.completionTokens = usage.completion_tokens ?? result.completionTokens;
    result.promptTokens = usage.prompt_tokens ?? result.promptTokens;
    const cached = usage.prompt_tokens_details?.cached_tokens;
    if (typeof cached === "number") result.cachedTokens = cached;
  }
  // llama-server's final chunk carries its own counters; cache_n is the prompt tokens it reused.
  const timings = payload?.timings;
  if (timings && typeof timings === "object") {
    if (typeof timings.predicted_n === "number") result.completionTokens = timings.predicted_n;
    if (typeof timings.cache_n === "number" && result.cachedTokens === undefined) result.cachedTokens = timings.cache_n;
  }
}

async function streamRequest(
  target: Target,
  path: "/v1/completions" | "/v1/chat/completions",
  body: Record<string, unknown>,
): Promise<StreamResult> {
  const payload = JSON.stringify({
    model: target.model,
    ...SAMPLING,
    ...target.extra,
    ...body,
    stream: true,
    stream_options: { include_usage: true },
  });
  let started = performance.now();
  const response = await post(target.url + path, payload, () => (started = performance.now()));
  if (!response.ok || !response.body) throw new Error(`${target.name} ${path}: HTTP ${response.status} ${await response.text()}`);
  const result: StreamResult = { ttftMs: NaN, totalMs: NaN, text: "" };
  const decoder = new TextDecoder();
  let buffer = "";
  let gotFirst = false;
  // Parsing is kept to the first token and the final chunks, because this client shares llamaport's JS thread.
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const final = data.includes('"usage":{') || data.includes('"timings":{');
        if (gotFirst && !final) continue;
        const payload = JSON.parse(data);
        if (!gotFirst) {
          const text = firstText(payload);
          if (text !== undefined) {
            result.ttftMs = performance.now() - started;
            gotFirst = true;
            result.text += text;
          }
        }
        if (final) readUsage(payload, result);
      }
    }
  }
  result.totalMs = performance.now() - started;
  if (!gotFirst) result.ttftMs = result.totalMs;
  return result;
}

async function plainRequest(target: Target, path: string, body: Record<string, unknown>): Promise<any> {
  const payload = JSON.stringify({ model: target.model, ...SAMPLING, ...target.extra, ...body, stream: false });
  const response = await post(target.url + path, payload, () => {});
  const json = await response.json();
  if (!response.ok) throw new Error(`${target.name} ${path}: HTTP ${response.status} ${JSON.stringify(json)}`);
  return json;
}

// ---------------------------------------------------------------------------------------------------------------------
// The peer: llama-server as a child process on a loopback port

async function freePort(): Promise<number> {
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = server.port!;
  await server.stop(true);
  return port;
}

interface Peer {
  url: string;
  args: string[];

  stop(): Promise<void>;
}

/** Argument list, kept in one place so results.md can quote it. */
function peerArgs(modelPath: string, port: number, threads: Threads): string[] {
  return [
    "-m",
    modelPath,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    // -tb too: llamaport passes one thread count to node-llama-cpp, which uses it for prompt batches as well. Without
    // them llama-server uses its default (the physical cores) for both.
    ...(threads === "default" ? [] : ["-t", String(threads), "-tb", String(threads)]),
    // llama-server splits -c across -np slots; llamaport's `context` is per sequence. Non-unified KV on both sides
    // (node-llama-cpp never enables kv_unified).
    "-c",
    String(CONTEXT * PARALLEL),
    "-np",
    String(PARALLEL),
    "--no-kv-unified",
    // node-llama-cpp sets n_batch = n_ubatch = min(context * sequences, 512); llama-server defaults to 2048/512.
    "-b",
    "512",
    "-ub",
    "512",
    // node-llama-cpp 3.21.1 defaults flashAttention to "auto" when the model supports it, like llama-server's -fa auto.
    "-fa",
    "auto",
    "-ngl",
    "0",
    // --fit may shrink unset parameters to fit device memory; nothing should be adjusted behind the benchmark's back.
    "-fit",
    "off",
    "--cont-batching",
    "--no-webui",
    // The same chat template on both sides (llamaport entries use node-llama-cpp's chatML wrapper) for scenario 4.
    "--chat-template",
    "chatml",
  ];
}

/**
 * llama.cpp's system_info line (the CPU features the build uses), to set beside node-llama-cpp's. It is only logged
 * at verbosity 4, which the timed servers do not use, so a throwaway server prints it.
 */
async function probePeerSystemInfo(binary: string, modelPath: string): Promise<string> {
  const child = Bun.spawn([binary, "-m", modelPath, "--port", String(await freePort()), "--host", "127.0.0.1", "-lv", "4", "-t", "1"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    let text = "";
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
      const match = /system_info:.*?(CPU :[^\n]*)/.exec(text);
      if (match) return match[1]!.trim();
    }
    return "?";
  } finally {
    clearTimeout(timer);
    child.kill("SIGKILL");
    await child.exited;
  }
}

async function startPeer(binary: string, modelPath: string, threads: Threads, logDir: string): Promise<Peer> {
  const port = await freePort();
  const args = peerArgs(modelPath, port, threads);
  const logPath = join(logDir, `llama-server-${port}.log`);
  const logFd = openSync(logPath, "w");
  const child: Subprocess = Bun.spawn([binary, ...args], { stdout: logFd, stderr: logFd, stdin: "ignore" });
  closeSync(logFd);
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 60_000;
  for (;;) {
    // A crash shows as signalCode (exitCode stays null), so check both.
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`llama-server exited (${child.exitCode ?? child.signalCode}):\n${readFileSync(logPath, "utf8").slice(-3000)}`);
    try {
      const health = await fetch(`${url}/health`);
      if (health.ok) break;
    } catch {
      // Not listening yet.
    }
    if (performance.now() > deadline) {
      child.kill();
      throw new Error(`llama-server did not become healthy in 60 s:\n${readFileSync(logPath, "utf8").slice(-3000)}`);
    }
    await Bun.sleep(100);
  }
  return {
    url,
    args,
    stop: async () => {
      child.kill("SIGTERM");
      const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
      if (!exited) child.kill("SIGKILL");
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Statistics

const median = (values: number[]) => quantile(values, 0.5);

function quantile(values: number[], q: number): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  // Linear interpolation between closest ranks (numpy's default), so p99 of 16 samples sits just below the maximum.
  const position = (sorted.length - 1) * q;
  const low = Math.floor(position);
  const high = Math.ceil(position);
  return sorted[low]! + (sorted[high]! - sorted[low]!) * (position - low);
}

// ---------------------------------------------------------------------------------------------------------------------
// Result rows

type Kind = "rate" | "time" | "info";

interface Row {
  model: ModelKey;
  threads: Threads;
  scenario: string;
  metric: string;
  unit: string;
  llamaport: number;
  peer: number;
  /** rate: higher is better; time: lower is better; info: no ratio. */
  kind: Kind;
  goal?: string;
  /** Whether the goal is met, where the row has one. */
  pass?: boolean;
  note?: string;
}

const rows: Row[] = [];

/** Speed ratio: llamaport's speed over llama-server's, so >= 1.0 means llamaport is at least as fast for both kinds. */
function speedRatio(row: Row): number {
  if (row.kind === "rate") return row.llamaport / row.peer;
  if (row.kind === "time") return row.peer / row.llamaport;
  return NaN;
}

function addRow(row: Omit<Row, "pass"> & { pass?: boolean }): void {
  const full: Row = { ...row };
  if (full.pass === undefined && full.goal === ">= 1.0") full.pass = speedRatio(full) >= 1.0;
  rows.push(full);
  const ratio = speedRatio(full);
  console.error(
    `  [${full.model} t${full.threads}] ${full.scenario} ${full.metric}: llamaport ${fmt(full.llamaport)} ${full.unit}, ` +
      `llama-server ${fmt(full.peer)} ${full.unit}${Number.isFinite(ratio) ? `, ratio ${ratio.toFixed(2)}` : ""}${full.note ? ` (${full.note})` : ""}`,
  );
}

function verdict(row: Row, missed: string): string {
  if (row.pass === undefined) return row.note?.startsWith("inconclusive") ? "inconclusive" : "";
  return row.pass ? "ok" : missed;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return "-";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

// ---------------------------------------------------------------------------------------------------------------------
// Scenarios. Each alternates which server goes first per repetition, so slow drift on the shared machine (other
// people's jobs) lands on both sides instead of on whichever happened to run second.

function orderFor(rep: number, targets: [Target, Target]): Target[] {
  return rep % 2 === 0 ? [targets[0], targets[1]] : [targets[1], targets[0]];
}

async function scenario1(ctx: BlockContext): Promise<void> {
  const byName = {
    llamaport: { rate: [] as number[], ttft: [] as number[] },
    "llama-server": { rate: [] as number[], ttft: [] as number[] },
  };
  for (let rep = 0; rep < REPS.s1; rep++) {
    const prompt = shortPrompt(1000 + rep);
    for (const target of orderFor(rep, ctx.targets)) {
      const r = await streamRequest(target, "/v1/completions", { prompt, max_tokens: S1_TOKENS });
      checkCount(target, r, S1_TOKENS);
      byName[target.name].rate.push(S1_TOKENS / (r.totalMs / 1000));
      byName[target.name].ttft.push(r.ttftMs);
    }
  }
  const base = { model: ctx.model, threads: ctx.threads, scenario: "1 one stream" };
  addRow({
    ...base,
    metric: `tokens/s (${S1_TOKENS} tokens, end to end)`,
    unit: "tok/s",
    kind: "rate",
    goal: ">= 1.0",
    llamaport: median(byName.llamaport.rate),
    peer: median(byName["llama-server"].rate),
  });
  addRow({
    ...base,
    metric: "time to first token",
    unit: "ms",
    kind: "time",
    goal: ">= 1.0",
    llamaport: median(byName.llamaport.ttft),
    peer: median(byName["llama-server"].ttft),
  });
}

async function concurrent(target: Target, clients: number, tokens: number, seedBase: number) {
  const before = decodeCounter.snapshot();
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: clients }, (_, i) =>
      streamRequest(target, "/v1/completions", { prompt: shortPrompt(seedBase + i), max_tokens: tokens }),
    ),
  );
  for (const r of results) checkCount(target, r, tokens);
  // Only llamaport decodes in this process (llama-server is a child process).
  const decodes = target.name === "llamaport" ? DecodeCounter.since(before, decodeCounter.snapshot()) : undefined;
  return { wallMs: performance.now() - started, ttfts: results.map((r) => r.ttftMs), decodes };
}

/** llamaport's decode steps and the sequences' tokens they carried, summed over a scenario's repetitions. */
function itemsPerDecodeRow(ctx: BlockContext, scenario: string, counts: DecodeCounts[], ideal: number): void {
  const decodes = counts.reduce((sum, c) => sum + c.decodes, 0);
  const items = counts.reduce((sum, c) => sum + c.items, 0);
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario,
    metric: `llamaport items per decode step (prompt steps included; ${ideal} = every sequence in every step)`,
    unit: "items",
    kind: "info",
    llamaport: items / decodes,
    peer: NaN,
    note: `${decodes} decodes, ${items} items`,
  });
}

async function scenario2(ctx: BlockContext): Promise<void> {
  const rates = { llamaport: [] as number[], "llama-server": [] as number[] };
  const counts: DecodeCounts[] = [];
  for (let rep = 0; rep < REPS.s2; rep++) {
    for (const target of orderFor(rep, ctx.targets)) {
      const { wallMs, decodes } = await concurrent(target, PARALLEL, S2_TOKENS, 2000 + rep * 10);
      rates[target.name].push((PARALLEL * S2_TOKENS) / (wallMs / 1000));
      if (decodes) counts.push(decodes);
    }
  }
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario: `2 ${PARALLEL} streams`,
    metric: `aggregate tokens/s (${PARALLEL}x${S2_TOKENS})`,
    unit: "tok/s",
    kind: "rate",
    goal: ">= 1.0",
    llamaport: median(rates.llamaport),
    peer: median(rates["llama-server"]),
  });
  itemsPerDecodeRow(ctx, `2 ${PARALLEL} streams`, counts, PARALLEL);
}

async function scenario3(ctx: BlockContext): Promise<void> {
  const total = { llamaport: [] as number[], "llama-server": [] as number[] };
  const ttfts = { llamaport: [] as number[], "llama-server": [] as number[] };
  const counts: DecodeCounts[] = [];
  for (let rep = 0; rep < REPS.s3; rep++) {
    for (const target of orderFor(rep, ctx.targets)) {
      const r = await concurrent(target, S3_CLIENTS, S3_TOKENS, 3000 + rep * 100);
      total[target.name].push(r.wallMs);
      ttfts[target.name].push(...r.ttfts);
      if (r.decodes) counts.push(r.decodes);
    }
  }
  const base = {
    model: ctx.model,
    threads: ctx.threads,
    scenario: `3 ${S3_CLIENTS} clients/${PARALLEL} slots`,
    kind: "time" as const,
    goal: ">= 1.0",
  };
  addRow({
    ...base,
    metric: `total time (${S3_CLIENTS}x${S3_TOKENS} tokens)`,
    unit: "ms",
    llamaport: median(total.llamaport),
    peer: median(total["llama-server"]),
  });
  addRow({
    ...base,
    metric: "p50 time to first token",
    unit: "ms",
    llamaport: quantile(ttfts.llamaport, 0.5),
    peer: quantile(ttfts["llama-server"], 0.5),
  });
  addRow({
    ...base,
    metric: "p99 time to first token",
    unit: "ms",
    llamaport: quantile(ttfts.llamaport, 0.99),
    peer: quantile(ttfts["llama-server"], 0.99),
  });
  itemsPerDecodeRow(ctx, `3 ${S3_CLIENTS} clients/${PARALLEL} slots`, counts, PARALLEL);
}

/** A conversation whose system message is long, so re-evaluating it is what a missing prefix reuse costs. */
function conversation(seed: number, systemWords: number) {
  return {
    system: `You are assistant number ${seed}. Background: ${words(seed * 7 + 1, systemWords)}`,
    user1: `First question ${seed}: ${words(seed * 7 + 2, 30)}?`,
    user2: `Follow up ${seed}: ${words(seed * 7 + 3, 12)}?`,
  };
}

async function scenario4(ctx: BlockContext): Promise<void> {
  const reuse = { llamaport: [] as number[], "llama-server": [] as number[] };
  const fresh = { llamaport: [] as number[], "llama-server": [] as number[] };
  const cached = { llamaport: [] as number[], "llama-server": [] as number[] };
  const promptTokens = { llamaport: [] as number[], "llama-server": [] as number[] };
  for (let rep = 0; rep < REPS.s4; rep++) {
    for (const target of orderFor(rep, ctx.targets)) {
      const c = conversation(4000 + rep, SYSTEM_WORDS);
      const turn1 = [
        { role: "system", content: c.system },
        { role: "user", content: c.user1 },
      ];
      const first = await plainRequest(target, "/v1/chat/completions", { messages: turn1, max_tokens: S4_TURN1_TOKENS });
      const answer: string = first.choices[0].message.content;
      const turn2 = [...turn1, { role: "assistant", content: answer }, { role: "user", content: c.user2 }];
      const second = await streamRequest(target, "/v1/chat/completions", { messages: turn2, max_tokens: S4_TURN2_TOKENS });
      reuse[target.name].push(second.ttftMs);
      if (second.cachedTokens !== undefined) cached[target.name].push(second.cachedTokens);
      if (second.promptTokens !== undefined) promptTokens[target.name].push(second.promptTokens);

      // The same turn without reuse: a conversation of the same shape that shares nothing with any cached prompt
      // (different words from the first one on), with the previous answer's length, so only the cache differs.
      const other = conversation(9000 + rep, SYSTEM_WORDS);
      const noReuse = [
        { role: "system", content: other.system },
        { role: "user", content: other.user1 },
        { role: "assistant", content: answer },
        { role: "user", content: other.user2 },
      ];
      const cold = await streamRequest(target, "/v1/chat/completions", { messages: noReuse, max_tokens: S4_TURN2_TOKENS });
      fresh[target.name].push(cold.ttftMs);
    }
  }
  const base = { model: ctx.model, threads: ctx.threads, scenario: "4 two-turn chat" };
  const lpReuse = median(reuse.llamaport);
  const lpFresh = median(fresh.llamaport);
  addRow({
    ...base,
    metric: "turn-2 TTFT with prompt reuse",
    unit: "ms",
    kind: "time",
    goal: ">= 1.0",
    llamaport: lpReuse,
    peer: median(reuse["llama-server"]),
    note: `cached tokens ${fmt(median(cached.llamaport))} vs ${fmt(median(cached["llama-server"]))} of ${fmt(median(promptTokens.llamaport))} vs ${fmt(median(promptTokens["llama-server"]))}`,
  });
  addRow({
    ...base,
    metric: "turn-2 TTFT without reuse (fresh prompt, same length)",
    unit: "ms",
    kind: "time",
    llamaport: lpFresh,
    peer: median(fresh["llama-server"]),
  });
  addRow({
    ...base,
    metric: "llamaport reuse speed-up (without / with)",
    unit: "x",
    kind: "info",
    llamaport: lpFresh / lpReuse,
    peer: median(fresh["llama-server"]) / median(reuse["llama-server"]),
    goal: "far above 1",
    pass: lpFresh / lpReuse >= 2,
  });
}

/** Scenario 5 baseline: node-llama-cpp called directly in this process, configured the way LoadedModel configures it. */
async function scenario5(ctx: BlockContext): Promise<void> {
  const nlc = await importNodeLlamaCpp();
  const llama = await getLlamaRuntime();
  const model = await llama.loadModel({ modelPath: ctx.modelPath });
  // min = ideal: node-llama-cpp's ThreadsSplitter shares the Llama's maxThreads between contexts and, with a plain
  // number, may hand this second context fewer threads than asked while llamaport's context exists (seen: 1 of 2).
  // Default threads: what LoadedModel chooses (threadsFor), under the same ThreadBudget when it would be.
  const policy =
    ctx.threads === "default"
      ? threadsFor({ threads: undefined } as ModelEntry, model.size, physicalCores())
      : { threads: ctx.threads, adaptive: false };
  const context = await model.createContext({
    contextSize: CONTEXT,
    sequences: PARALLEL,
    threads: { ideal: policy.threads, min: policy.threads },
  });
  if (policy.adaptive) ctx.engine.threadBudget.attach(context);
  const sequence = context.getSequence();
  const bias = new nlc.TokenBias(model.tokenizer);
  if (model.tokens.eos != null) bias.set(model.tokens.eos, "never");
  if (model.tokens.eot != null) bias.set(model.tokens.eot, "never");
  const llamaport = ctx.targets.find((t) => t.name === "llamaport")!;

  const direct = async (prompt: string) => {
    // node-llama-cpp's own generation loop, as a program using it directly would stream text: tokenize the prompt as
    // llamaport and llama-server do (special tokens parsed, BOS first), evaluate, detokenize each token.
    const started = performance.now();
    let firstAt = 0;
    let tokens = 0;
    let text = "";
    const bos = model.tokens.bos;
    const input = [...(bos == null ? [] : [bos]), ...model.tokenize(prompt, true)] as Token[];
    await sequence.clearHistory();
    const options = {
      temperature: SAMPLING.temperature,
      topK: SAMPLING.top_k,
      topP: SAMPLING.top_p,
      minP: SAMPLING.min_p,
      seed: SAMPLING.seed,
      tokenBias: bias,
    };
    for await (const token of sequence.evaluate(input, options)) {
      if (tokens === 0) firstAt = performance.now();
      text += model.detokenize([token]);
      if (++tokens >= S5_TOKENS) break;
    }
    return { totalMs: performance.now() - started, ttftMs: firstAt - started, tokens, text };
  };

  const peer = ctx.targets.find((t) => t.name === "llama-server")!;
  const directMs: number[] = [];
  const serverMs: number[] = [];
  const peerMs: number[] = [];
  const perTokenUs: number[] = [];
  try {
    await direct(shortPrompt(4999)); // warm-up, like the servers got
    for (let rep = 0; rep < REPS.s5; rep++) {
      const prompt = shortPrompt(5000 + rep);
      let d = NaN;
      let s = NaN;
      // llama-server runs the same prompt too, splitting the scenario 1 gap into library (direct vs llama-server)
      // and server (llamaport vs direct).
      const order = rep % 2 === 0 ? ["direct", "server", "peer"] : ["peer", "server", "direct"];
      for (const which of order) {
        if (which === "direct") {
          const r = await direct(prompt);
          if (r.tokens !== S5_TOKENS) throw new Error(`direct run produced ${r.tokens} tokens, expected ${S5_TOKENS}`);
          d = r.totalMs;
        } else if (which === "server") {
          const r = await streamRequest(llamaport, "/v1/completions", { prompt, max_tokens: S5_TOKENS });
          s = r.totalMs;
        } else {
          const r = await streamRequest(peer, "/v1/completions", { prompt, max_tokens: S5_TOKENS });
          peerMs.push(r.totalMs);
        }
      }
      directMs.push(d);
      serverMs.push(s);
      perTokenUs.push(((s - d) * 1000) / S5_TOKENS);
    }
  } finally {
    await context.dispose();
    await model.dispose();
  }
  const overhead = median(perTokenUs);
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario: "5 server overhead",
    metric: `llamaport streaming vs direct node-llama-cpp (${S5_TOKENS} tokens)`,
    unit: "ms",
    kind: "info",
    llamaport: median(serverMs),
    peer: NaN,
    note: `direct ${fmt(median(directMs))} ms`,
  });
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario: "5 server overhead",
    metric: `direct node-llama-cpp (llamaport column) vs llama-server, same prompts`,
    unit: "ms",
    kind: "time",
    llamaport: median(directMs),
    peer: median(peerMs),
  });
  // A baseline clearly slower than the server path means the direct run was disturbed (seen at 2 threads on a
  // shared 2-core machine), not that the server costs nothing: report it as inconclusive rather than as a pass.
  const inconclusive = overhead < -50;
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario: "5 server overhead",
    metric: "overhead per token (median of paired runs)",
    unit: "us",
    kind: "info",
    llamaport: overhead,
    peer: NaN,
    goal: "< 50 us",
    pass: inconclusive ? undefined : overhead < 50,
    note: inconclusive ? "inconclusive: direct baseline slower than the server path" : undefined,
  });
  ctx.direct = { ms: median(directMs), serverMs: median(serverMs), overheadUs: overhead };
}

/**
 * What speculation did on this prompt for an entry: the same greedy request once more, in process, whose summary counts
 * predicted and accepted tokens (greedy and alone, it drafts as the timed requests did).
 */
async function speculationOf(
  ctx: BlockContext,
  entry: string,
  prompt: string | number[],
): Promise<{ predicted: number; accepted: number }> {
  const { summary } = await ctx.engine
    .complete({ model: entry, prompt, raw: true, maxTokens: S6_TOKENS, temperature: 0, topK: 40, topP: 0.95, minP: 0.05, ignoreEos: true })
    .collect();
  return summary.speculation ?? { predicted: 0, accepted: 0 };
}

const percent = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(0)}%` : "none predicted");

/**
 * The prompts of scenario 6, as token ids (so both servers see exactly the tokens the model generated): the model's own
 * output after a short seed, the same with some of its words swapped for others of it, and a scenario-1 prompt.
 */
async function speculativeWorkloads(ctx: BlockContext): Promise<{ name: string; prompt: string | number[]; goal?: number }[]> {
  const first = await ctx.engine
    .complete({
      model: ctx.targets[0].model,
      prompt: "Story 6: the of and to",
      raw: true,
      maxTokens: 320,
      temperature: 0,
      ignoreEos: true,
      reportContext: true,
    })
    .collect();
  const own = first.summary.context!;
  const changed = (every: number) => own.map((token, i) => (i > 8 && i % every === 0 ? own[(i + 7) % own.length]! : token));
  // --quick: the acceptance curve only on the cycle model, where acceptance is what the prompt makes it.
  const curve = !options.quick || ctx.model === "cycle";
  return [
    // The 1.5x goal is for the model whose text is entirely predictable (the cycle model); elsewhere it is a record.
    { name: "continues its own text", prompt: own, ...(ctx.model === "cycle" && { goal: 1.5 }) },
    ...(curve
      ? [
          { name: "own text, 1 in 16 words changed", prompt: changed(16) },
          { name: "own text, 1 in 4 words changed", prompt: changed(4) },
        ]
      : []),
    { name: "scenario-1 prompt", prompt: shortPrompt(1000) },
  ];
}

/** Scenario 6: prompt-lookup speculative decoding, llamaport auto / on / off against llama-server's default. */
async function scenario6(ctx: BlockContext): Promise<void> {
  const [auto] = ctx.targets;
  const { off } = ctx.speculative;
  for (const workload of await speculativeWorkloads(ctx)) await speculativeWorkload(ctx, workload);
  // Concurrency: auto never drafts while other requests share the context; this checks it costs nothing there either.
  const rates = new Map<Target, number[]>([auto, off].map((t) => [t, []]));
  for (let rep = 0; rep < REPS.s6; rep++)
    for (const target of rep % 2 === 0 ? [auto, off] : [off, auto]) {
      const { wallMs } = await concurrent(target, PARALLEL, S2_TOKENS, 6000 + rep * 10);
      rates.get(target)!.push((PARALLEL * S2_TOKENS) / (wallMs / 1000));
    }
  const autoRate = median(rates.get(auto)!);
  const offRate = median(rates.get(off)!);
  addRow({
    model: ctx.model,
    threads: ctx.threads,
    scenario: `6 speculative: ${PARALLEL} streams (scenario 2)`,
    metric: "aggregate tokens/s, llamaport auto vs off (off in the llama-server column)",
    unit: "tok/s",
    kind: "rate",
    llamaport: autoRate,
    peer: offRate,
    goal: ">= 0.97",
    pass: autoRate / offRate >= 0.97,
  });
}

async function speculativeWorkload(ctx: BlockContext, workload: { name: string; prompt: string | number[]; goal?: number }): Promise<void> {
  const [auto, peer] = ctx.targets;
  const { off, on } = ctx.speculative;
  const rates = new Map<Target, number[]>([auto, peer, off, on].map((t) => [t, []]));
  for (let rep = 0; rep < REPS.s6; rep++) {
    const order = [auto, peer, off, on];
    for (let i = 0; i < order.length; i++) {
      const target = order[(i + rep) % order.length]!;
      const r = await streamRequest(target, "/v1/completions", { prompt: workload.prompt, max_tokens: S6_TOKENS });
      checkCount(target, r, S6_TOKENS);
      rates.get(target)!.push(S6_TOKENS / (r.totalMs / 1000));
    }
  }
  const rate = (t: Target) => median(rates.get(t)!);
  const autoCounts = await speculationOf(ctx, auto.model, workload.prompt);
  const onCounts = await speculationOf(ctx, on.model, workload.prompt);
  const base = { model: ctx.model, threads: ctx.threads, scenario: `6 speculative: ${workload.name}`, unit: "tok/s" };
  const vsPeer = rate(auto) / rate(peer);
  addRow({
    ...base,
    metric: `tokens/s, llamaport auto (accepted ${percent(autoCounts.accepted, autoCounts.predicted)} of ${autoCounts.predicted} predicted)`,
    kind: "rate",
    llamaport: rate(auto),
    peer: rate(peer),
    ...(workload.goal !== undefined && { goal: `>= ${workload.goal}`, pass: vsPeer >= workload.goal }),
  });
  addRow({
    ...base,
    metric: "llamaport auto vs off (off in the llama-server column)",
    kind: "rate",
    llamaport: rate(auto),
    peer: rate(off),
    goal: ">= 0.97",
    pass: rate(auto) / rate(off) >= 0.97,
  });
  addRow({
    ...base,
    metric: `llamaport on vs off (off in the llama-server column): speed-up at ${percent(onCounts.accepted, onCounts.predicted)} accepted of ${onCounts.predicted}`,
    kind: "rate",
    llamaport: rate(on),
    peer: rate(off),
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Checks done once per block: both servers produce the fixed length, and see the same prompt

const countProblems: string[] = [];

const NOTES_MARKER = "<!-- Hand-written notes: bench/run.ts keeps everything from this line on when it rewrites the file. -->";

function checkCount(target: Target, r: StreamResult, expected: number): void {
  // llamaport's /v1/completions stream carries no usage; with ignore_eos and max_tokens the count is exact (checked
  // on the non-streamed verification request of each block).
  if (r.completionTokens !== undefined && r.completionTokens !== expected)
    countProblems.push(`${target.name}: ${r.completionTokens} tokens instead of ${expected}`);
}

interface BlockContext {
  model: ModelKey;
  modelPath: string;
  threads: Threads;
  targets: [Target, Target];
  /** The block's model with `speculative: off` and `on` (scenario 6); the main llamaport target has the default. */
  speculative: { off: Target; on: Target };
  engine: RunningLlamaport["engine"];
  verification?: string;
  direct?: { ms: number; serverMs: number; overheadUs: number };
  /** Decode steps per thread count the ThreadBudget allowed during the block (default threads only). */
  threadsUsed?: string;
}

async function verify(ctx: BlockContext): Promise<void> {
  const prompt = shortPrompt(1);
  const outputs: Record<string, any> = {};
  for (const target of ctx.targets) {
    // The first request also warms the server (llamaport loads the model on it).
    outputs[target.name] = await plainRequest(target, "/v1/completions", { prompt, max_tokens: 32 });
  }
  const lp = outputs.llamaport;
  const peer = outputs["llama-server"];
  const problems: string[] = [];
  for (const [name, out] of Object.entries(outputs))
    if (out.usage?.completion_tokens !== 32) problems.push(`${name} generated ${out.usage?.completion_tokens} tokens, not 32`);
  const lpPrompt = lp.usage?.prompt_tokens as number;
  const peerPrompt = peer.usage?.prompt_tokens as number;
  // llamaport tokenizes raw prompts with node-llama-cpp's "trimLeadingSpace" (no SPM space prefix), llama-server adds
  // the prefix: one token apart, and so a different (equally long) greedy continuation. Anything more is a problem.
  if (!(Math.abs(lpPrompt - peerPrompt) <= 1)) problems.push(`prompt tokens differ: llamaport ${lpPrompt}, llama-server ${peerPrompt}`);
  const same = lp.choices[0].text === peer.choices[0].text;
  ctx.verification =
    `prompt tokens llamaport ${lpPrompt}, llama-server ${peerPrompt}` +
    (lpPrompt !== peerPrompt ? " (llamaport drops the SPM leading-space token of raw prompts)" : "") +
    `; 32 tokens generated by both; greedy text ${same ? "identical" : "differs"}` +
    (problems.length ? `; PROBLEMS: ${problems.join("; ")}` : "");
  if (problems.length) console.error(`  verification: ${problems.join("; ")}`);
  // One streamed warm-up per server, so the first timed request pays for nothing a later one would not.
  for (const target of ctx.targets) await streamRequest(target, "/v1/completions", { prompt: shortPrompt(2), max_tokens: 16 });
}

// ---------------------------------------------------------------------------------------------------------------------
// Machine and versions

function sh(command: string): string {
  try {
    return execSync(command, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "?";
  }
}

function machineInfo(commit: string) {
  const lscpu = sh("lscpu");
  const field = (name: string) => lscpu.match(new RegExp(`^${name}:\\s*(.+)$`, "m"))?.[1]?.trim() ?? "?";
  const nlcPackage = JSON.parse(readFileSync(resolve(import.meta.dir, "../node_modules/node-llama-cpp/package.json"), "utf8"));
  return {
    cpu: field("Model name"),
    cpus: field("CPU\\(s\\)"),
    coresPerSocket: field("Core\\(s\\) per socket"),
    threadsPerCore: field("Thread\\(s\\) per core"),
    memory: sh("free -h | awk '/^Mem:/ {print $2}'"),
    kernel: sh("uname -r"),
    bun: Bun.version,
    nodeLlamaCpp: nlcPackage.version as string,
    llamaCppCommit: commit,
    loadavg: sh("cat /proc/loadavg"),
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Main

/** The models.yaml entry of a model and thread setting; with scenario 6 also its `speculative: off` and `on` twins. */
const entryName = (model: ModelKey, threads: Threads, speculative = "") => `${model}-t${threads}${speculative && `-${speculative}`}`;

function modelsYaml(modelPaths: Partial<Record<ModelKey, string>>): string {
  const variants = options.scenarios.has(6) ? ["", "off", "on"] : [""];
  const entry = (model: ModelKey, threads: Threads, speculative: string) =>
    [
      `  ${entryName(model, threads, speculative)}:`,
      `    source: ${JSON.stringify(modelPaths[model])}`,
      `    context: ${CONTEXT}`,
      `    parallel: ${PARALLEL}`,
      // No threads key: llamaport's own policy (ThreadBudget), which is what "default" measures.
      ...(threads === "default" ? [] : [`    threads: ${threads}`]),
      ...(speculative ? [`    speculative: ${speculative}`] : []),
      `    keep_alive: -1`,
      `    chat_template: chatML`,
    ].join("\n");
  return [
    "# Written by bench/run.ts for one benchmark run.",
    "max_loaded_models: 4",
    "models:",
    ...options.models.flatMap((model) => options.threads.flatMap((threads) => variants.map((v) => entry(model, threads, v)))),
    "",
  ].join("\n");
}

/** The cycle model exists for scenario 6; the others run every scenario asked for. */
const scenariosFor = (model: ModelKey) => new Set([...options.scenarios].filter((s) => model !== "cycle" || s === 6));

async function runBlock(ctx: BlockContext): Promise<void> {
  const scenarios = scenariosFor(ctx.model);
  ctx.engine.threadBudget.steps.clear();
  await verify(ctx);
  console.error(`  verification: ${ctx.verification}`);
  if (scenarios.has(1)) await scenario1(ctx);
  if (scenarios.has(2)) await scenario2(ctx);
  if (scenarios.has(3)) await scenario3(ctx);
  if (scenarios.has(4)) await scenario4(ctx);
  if (scenarios.has(5)) await scenario5(ctx);
  if (scenarios.has(6)) await scenario6(ctx);
  const steps = [...ctx.engine.threadBudget.steps.entries()].sort((a, b) => b[0] - a[0]);
  const total = steps.reduce((sum, [, n]) => sum + n, 0);
  if (ctx.threads === "default")
    ctx.threadsUsed = total
      ? `${steps.map(([threads, n]) => `${threads} thread(s) ${((100 * n) / total).toFixed(0)}%`).join(", ")} of ${total} decode steps`
      : "no step asked the ThreadBudget (the models' default is 1 thread: under 64 MB, or 1 core)";
  if (ctx.threadsUsed) console.error(`  threads used: ${ctx.threadsUsed}`);
}

async function main(): Promise<void> {
  const runStarted = performance.now();
  const workDir = join(tmpdir(), `llamaport-bench-${process.pid}`);
  mkdirSync(workDir, { recursive: true });
  const loadAtStart = sh("cat /proc/loadavg");
  console.error(`load average at start: ${loadAtStart}`);

  const cacheDir = defaultCacheDir(process.env);
  console.error(
    "preparing llama-server (built once from node-llama-cpp's llama.cpp bundle, cached; the first build takes 20-60 min on 2 cores)...",
  );
  const build = await ensureLlamaServer({ cacheDir, log: (line) => console.error(`  ${line}`) });
  console.error("preparing models...");
  const modelPaths: Partial<Record<ModelKey, string>> = {};
  for (const model of new Set<ModelKey>(["tiny", ...options.models]))
    modelPaths[model] = await ensureSyntheticModel(PRESETS[model], cacheDir);
  const modelsFile = join(workDir, "models.yaml");
  writeFileSync(modelsFile, modelsYaml(modelPaths));

  const llamaport: RunningLlamaport = await startLlamaport({
    port: 0,
    models: modelsFile,
    cacheDir,
    plugins: join(workDir, "no-plugins"),
    watch: false,
    log: () => {},
  });
  await llamaport.ready;
  const llama = await getLlamaRuntime();
  decodeCounter.install(llama);
  const backend = `gpu=${String(llama.gpu)}, ${llama.buildType} binary, ${llama.systemInfo.trim()}`;
  const info = machineInfo(build.commit);
  info.loadavg = loadAtStart;
  const peerSystemInfo = await probePeerSystemInfo(build.binary, modelPaths.tiny!);
  console.error(`llamaport ${llamaport.url}; ${backend}`);
  console.error(`machine: ${info.cpu}, ${info.cpus} CPUs`);

  const blocks: BlockContext[] = [];
  let peerArgsExample: string[] = [];
  const background = new BackgroundLoad(options.backgroundLoad);
  const cleanup: (() => Promise<void>)[] = [() => background.stop()];
  const onSignal = async () => {
    for (const fn of cleanup) await fn().catch(() => {});
    process.exit(130);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  background.start();
  if (options.backgroundLoad > 0) console.error(`background load: ${background.describe()}`);
  try {
    for (const model of options.models) {
      for (const threads of options.threads) {
        console.error(`\n== ${model}, threads: ${threads}`);
        const peer = await startPeer(build.binary, modelPaths[model]!, threads, workDir);
        const stopPeer = () => peer.stop();
        cleanup.push(stopPeer);
        peerArgsExample = peer.args;
        const lp = (speculative = ""): Target => ({
          name: "llamaport",
          url: llamaport.url,
          model: entryName(model, threads, speculative),
          extra: {},
        });
        const ctx: BlockContext = {
          model,
          modelPath: modelPaths[model]!,
          threads,
          targets: [
            lp(),
            // cache_prompt is llama-server's default too; sent so the comparison does not depend on it.
            { name: "llama-server", url: peer.url, model: "peer", extra: { cache_prompt: true } },
          ],
          speculative: { off: lp("off"), on: lp("on") },
          engine: llamaport.engine,
        };
        blocks.push(ctx);
        try {
          await runBlock(ctx);
        } finally {
          await stopPeer();
          cleanup.splice(cleanup.indexOf(stopPeer), 1);
          for (const speculative of ["", "off", "on"])
            await llamaport.engine.unload(entryName(model, threads, speculative)).catch(() => {});
        }
      }
    }
  } finally {
    await background.stop();
    await llamaport.stop();
  }

  const elapsedS = (performance.now() - runStarted) / 1000;
  const loadAtEnd = sh("cat /proc/loadavg");
  console.error(`load average at end: ${loadAtEnd}`);
  info.loadavg = `${loadAtStart} (start) / ${loadAtEnd} (end); ${background.describe()}`;
  const threadChoice = chooseThreads();
  printTable(threadChoice, elapsedS, blocks);
  if (options.out) {
    // Hand-written analysis below the marker survives reruns; everything above it is regenerated.
    const previous = existsSync(options.out) ? readFileSync(options.out, "utf8") : "";
    const markerAt = previous.indexOf(NOTES_MARKER);
    const notes = markerAt >= 0 ? previous.slice(markerAt) : `${NOTES_MARKER}\n`;
    writeFileSync(
      options.out,
      `${renderMarkdown(info, backend, build, peerArgsExample, peerSystemInfo, blocks, threadChoice, elapsedS)}\n${notes}`,
    );
    console.error(`\nwrote ${options.out}`);
  }
  if (countProblems.length) console.error(`token count problems:\n  ${countProblems.join("\n  ")}`);
  if (existsSync(workDir)) execSync(`rm -rf ${JSON.stringify(workDir)}`);
}

interface ThreadChoice {
  model: ModelKey;
  perThreads: { threads: Threads; llamaport: number; peer: number }[];
  llamaportBest: Threads;
  peerBest: Threads;
}

/** One line of the thread-default table: llamaport with its default threads against its best fixed count. */
interface ThreadDefault {
  model: ModelKey;
  scenario: string;
  metric: string;
  unit: string;
  byDefault: number;
  best: number;
  bestThreads: number;
  /** Speed of the default relative to the best fixed count (>= 0.9 is the goal). */
  ratio: number;
}

/**
 * "No collapse": with defaults, no scenario may be more than 10% slower than the best fixed thread count for it. Made
 * from the llamaport column of scenarios 1-4 when the run has `default` and fixed counts in --threads.
 */
function threadDefaults(): ThreadDefault[] {
  const fixed = options.threads.filter((t): t is number => t !== "default");
  if (!options.threads.includes("default") || fixed.length === 0) return [];
  const out: ThreadDefault[] = [];
  for (const row of rows) {
    if (row.threads !== "default" || (row.kind !== "rate" && row.kind !== "time") || !/^[1-4] /.test(row.scenario)) continue;
    const same = (r: Row) => r.model === row.model && r.scenario === row.scenario && r.metric.split(" (")[0] === row.metric.split(" (")[0];
    const candidates = rows.filter((r) => same(r) && typeof r.threads === "number" && Number.isFinite(r.llamaport));
    if (candidates.length === 0) continue;
    const better = (a: Row, b: Row) => (row.kind === "rate" ? b.llamaport > a.llamaport : b.llamaport < a.llamaport);
    const best = candidates.reduce((a, b) => (better(a, b) ? b : a));
    const ratio = row.kind === "rate" ? row.llamaport / best.llamaport : best.llamaport / row.llamaport;
    out.push({
      model: row.model,
      scenario: row.scenario,
      metric: row.metric,
      unit: row.unit,
      byDefault: row.llamaport,
      best: best.llamaport,
      bestThreads: best.threads as number,
      ratio,
    });
  }
  return out;
}

/** For each model, the thread count with the best single-stream and 4-stream speed (sum of both ratios to the best). */
function chooseThreads(): ThreadChoice[] {
  const choices: ThreadChoice[] = [];
  for (const model of options.models) {
    if (!scenariosFor(model).has(1) && !scenariosFor(model).has(2)) continue;
    const perThreads = options.threads.map((threads) => {
      const pick = (scenario: string, side: "llamaport" | "peer") =>
        rows.find((r) => r.model === model && r.threads === threads && r.scenario.startsWith(scenario) && r.kind === "rate")?.[side] ?? NaN;
      // Single-stream and aggregate speed weigh equally; either alone can hide a regression in the other.
      const score = (side: "llamaport" | "peer") => {
        const s1 = pick("1", side);
        const s2 = pick("2", side);
        return Number.isFinite(s2) ? (Number.isFinite(s1) ? Math.sqrt(s1 * s2) : s2) : s1;
      };
      return { threads, llamaport: score("llamaport"), peer: score("peer") };
    });
    const best = (side: "llamaport" | "peer") =>
      perThreads.reduce((a, b) => (Number.isFinite(b[side]) && !(b[side] <= a[side]) ? b : a)).threads;
    choices.push({ model, perThreads, llamaportBest: best("llamaport"), peerBest: best("peer") });
  }
  return choices;
}

function printTable(threadChoice: ThreadChoice[], elapsedS: number, blocks: BlockContext[]): void {
  const header = ["model", "thr", "scenario", "metric", "llamaport", "llama-server", "ratio", "goal"];
  const lines = rows.map((r) => {
    const ratio = speedRatio(r);
    const llamaportCell = `${fmt(r.llamaport)} ${r.unit}`;
    const peerCell = Number.isFinite(r.peer) ? `${fmt(r.peer)} ${r.unit}` : (r.note ?? "-");
    return [
      r.model,
      String(r.threads),
      r.scenario,
      r.metric,
      llamaportCell,
      peerCell,
      Number.isFinite(ratio) ? ratio.toFixed(2) : "",
      r.goal ? `${r.goal} ${verdict(r, "MISSED")}` : "",
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(
    "\nratio = llamaport speed / llama-server speed (rates: llamaport/llama-server; times: llama-server/llamaport); >= 1.0 means llamaport is at least as fast",
  );
  console.log(render(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const line of lines) console.log(render(line));
  console.log("");
  for (const c of threadChoice) {
    console.log(
      `threads, ${c.model}: ` +
        c.perThreads.map((p) => `${p.threads} thread(s): llamaport ${fmt(p.llamaport)}, llama-server ${fmt(p.peer)} tok/s`).join("; ") +
        ` -> faster: llamaport ${c.llamaportBest}, llama-server ${c.peerBest} thread(s)`,
    );
  }
  const defaults = threadDefaults();
  if (defaults.length) {
    console.log("\nthread defaults: llamaport with its default threads vs its best fixed count (goal: >= 0.90 everywhere)");
    for (const d of defaults)
      console.log(
        `  ${d.model.padEnd(7)} ${d.scenario.padEnd(22)} ${d.metric.split(" (")[0]!.padEnd(34)} default ${fmt(d.byDefault)} ${d.unit}, best ${fmt(d.best)} ${d.unit} at ${d.bestThreads} thread(s): ${d.ratio.toFixed(2)} ${d.ratio >= 0.9 ? "ok" : "MISSED"}`,
      );
  }
  for (const b of blocks) if (b.threadsUsed) console.log(`threads used, ${b.model} default: ${b.threadsUsed}`);
  console.log(`(run took ${elapsedS.toFixed(0)} s)`);
}

function renderMarkdown(
  info: ReturnType<typeof machineInfo>,
  backend: string,
  build: LlamaServerBuild,
  args: string[],
  peerSystemInfo: string,
  blocks: BlockContext[],
  threadChoice: ThreadChoice[],
  elapsedS: number,
): string {
  const out: string[] = [];
  out.push("# Benchmark: llamaport vs llama-server");
  out.push("");
  out.push("Written by `bun run bench` (bench/run.ts). The numbers are a record of one run on one machine, not a test;");
  out.push("rerun to refresh. Models are generated by the project's GGUF writer into the cache, never committed.");
  out.push("");
  out.push(`- Date: ${new Date().toISOString()}`);
  out.push(
    `- Machine: ${info.cpu}; ${info.cpus} CPUs (${info.coresPerSocket} cores per socket, ${info.threadsPerCore} thread(s) per core); ${info.memory} RAM; Linux ${info.kernel}`,
  );
  out.push(`- Load average: ${info.loadavg} (the machine is shared: numbers move by several percent between runs)`);
  out.push(`- Bun ${info.bun}; node-llama-cpp ${info.nodeLlamaCpp} (${backend})`);
  out.push(`- llama.cpp: commit ${info.llamaCppCommit} from node-llama-cpp's \`llama/gitRelease.bundle\`, for both sides`);
  out.push(
    `- llama-server build: \`cmake ${build.cmakeOptions.join(" ")}\`, target llama-server, i.e. the instruction sets of ggml's "${build.variant}" CPU variant, which is what node-llama-cpp's prebuilt loads here (OpenMP off in both); source patches: ${build.patches.join(", ") || "none"}`,
  );
  out.push(`- llama-server system info: ${peerSystemInfo}`);
  out.push(
    `- llama-server flags: \`${args
      .map((a) => (a.includes("/") ? "<model.gguf>" : a))
      .join(" ")
      .replace(/--port \d+/, "--port <free>")}\` (-t/-tb per block)`,
  );
  out.push(
    `- llamaport: in-process \`startLlamaport\`, one models.yaml entry per model and thread setting (no \`threads\` key for "default"): context ${CONTEXT} per sequence, parallel ${PARALLEL}, chat_template chatML, \`speculative\` left at its default (auto); scenario 6 adds twins with \`speculative: off\` and \`on\``,
  );
  out.push(
    `- Run: \`bun run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}\` (models: ${options.models.join(", ")}; threads: ${options.threads.join(", ")}; scenarios: ${[...options.scenarios].join(", ")}; ${options.backgroundLoad > 0 ? `background load ${options.backgroundLoad}` : "no background load"}), ${elapsedS.toFixed(0)} s`,
  );
  out.push("");
  out.push("## Method");
  out.push("");
  out.push(
    `- Both servers get the same requests on the OpenAI-compatible endpoints with \`stream: true\`: temperature 0 (greedy), top_k 40, top_p 0.95, min_p 0.05, seed 42, \`ignore_eos: true\`, fixed \`max_tokens\`; prompts are distinct per request so no prompt cache helps outside scenario 4.`,
  );
  out.push("- Time to first token (TTFT) is measured by the client from sending the request to the first SSE chunk with non-empty text.");
  out.push(
    "- Each block (model x threads) verifies both servers first (exact completion token count; same prompt token count) and warms them up; repetitions alternate which server goes first; medians are reported.",
  );
  out.push(
    `- Scenarios: (1) one stream, ${S1_TOKENS} tokens, ${REPS.s1} reps; (2) ${PARALLEL} concurrent streams of ${S2_TOKENS}, ${REPS.s2} reps; (3) ${S3_CLIENTS} concurrent clients of ${S3_TOKENS} tokens on ${PARALLEL} slots (TTFT includes queueing); (4) a two-turn chat (system message of ${SYSTEM_WORDS} words, about 1000 tokens, + question, ${S4_TURN1_TOKENS}-token answer, then the whole conversation + a new question), turn-2 TTFT, ${REPS.s4} reps; also the same-length turn with nothing cached; (5) llamaport streaming ${S5_TOKENS} tokens vs node-llama-cpp's \`sequence.evaluate\` loop called directly in the same process, detokenizing each token (same model file, context, threads, sampling), overhead = (server - direct) / tokens, ${REPS.s5} paired reps; (6) speculative decoding: llamaport with \`speculative\` auto (its default), on and off, against llama-server's default, on ${S6_TOKENS}-token single streams whose prompt is the model's own earlier output (token ids), with 1 in 16 or 1 in 4 of its words changed, and a scenario-1 prompt, ${REPS.s6} reps; acceptance = predicted tokens the model also generated.`,
  );
  out.push(
    "- ratio = llamaport speed / llama-server speed: for rates llamaport / llama-server, for times llama-server / llamaport; >= 1.0 means llamaport is at least as fast.",
  );
  out.push("");
  out.push("## Results");
  out.push("");
  out.push("| model | threads | scenario | metric | llamaport | llama-server | ratio | goal |");
  out.push("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const ratio = speedRatio(r);
    const peerCell = Number.isFinite(r.peer) ? `${fmt(r.peer)} ${r.unit}` : (r.note ?? "-");
    const metric = r.note && Number.isFinite(r.peer) ? `${r.metric} (${r.note})` : r.metric;
    out.push(
      `| ${r.model} | ${r.threads} | ${r.scenario} | ${metric} | ${fmt(r.llamaport)} ${r.unit} | ${peerCell} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : ""} | ${r.goal ? `${r.goal} ${verdict(r, "**missed**")}` : ""} |`,
    );
  }
  out.push("");
  out.push("## Threads");
  out.push("");
  out.push("Score = geometric mean of scenario 1 tokens/s and scenario 2 aggregate tokens/s.");
  out.push("");
  for (const c of threadChoice) {
    out.push(
      `- ${c.model}: ` +
        c.perThreads.map((p) => `${p.threads} thread(s) llamaport ${fmt(p.llamaport)} / llama-server ${fmt(p.peer)}`).join("; ") +
        `. Faster: ${c.llamaportBest} thread(s) for llamaport, ${c.peerBest} for llama-server.`,
    );
  }
  out.push("");
  const defaults = threadDefaults();
  if (defaults.length) {
    out.push("## Thread defaults");
    out.push("");
    out.push(
      "llamaport with its default threads (no `threads` in models.yaml: 1 under 64 MB, else the physical cores limited per decode step by the ThreadBudget) against its best fixed count, per scenario. Goal: >= 0.90 everywhere, quiet and with `--background-load`.",
    );
    out.push("");
    out.push("| model | scenario | metric | default | best fixed | at threads | ratio | goal |");
    out.push("|---|---|---|---|---|---|---|---|");
    for (const d of defaults)
      out.push(
        `| ${d.model} | ${d.scenario} | ${d.metric.split(" (")[0]} | ${fmt(d.byDefault)} ${d.unit} | ${fmt(d.best)} ${d.unit} | ${d.bestThreads} | ${d.ratio.toFixed(2)} | >= 0.90 ${d.ratio >= 0.9 ? "ok" : "**missed**"} |`,
      );
    out.push("");
  }
  const used = blocks.filter((b) => b.threadsUsed);
  if (used.length) {
    out.push("Threads the ThreadBudget allowed per decode step, default-thread blocks:");
    out.push("");
    for (const b of used) out.push(`- ${b.model}: ${b.threadsUsed}`);
    out.push("");
  }
  out.push("## Verification per block");
  out.push("");
  for (const b of blocks) out.push(`- ${b.model}, threads ${b.threads}: ${b.verification ?? "-"}`);
  if (countProblems.length) out.push(`- token count problems: ${countProblems.join("; ")}`);
  out.push("");
  return out.join("\n");
}

await main();
