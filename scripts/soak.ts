/**
 * `bun run soak [-- --requests N]`: N short requests over every protocol, a third of them cut off by their client
 * mid-reply, against a real server; prints its RSS, open file descriptors and active/queued sequences before and
 * after, then the time from SIGTERM to exit with 4 streams in flight. Not part of the test suite (it takes a while).
 */
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { defaultCacheDir } from "../src/config/environment.ts";
import { startLlamaport } from "../src/server/startLlamaport.ts";

const root = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};

if (args[0] === "--load") await load(args[1]!, Number(args[2]), Number(args[3]));
else await soak();

async function soak(): Promise<void> {
  const requests = option("requests", 3000);
  const dir = await mkdtemp(join(tmpdir(), "llamaport-soak-"));
  const models = join(dir, "models.yaml");
  await Bun.write(
    models,
    stringify({ models: { demo: { source: "synthetic:demo", context: 512, parallel: 4, threads: 1, keep_alive: -1 } } }),
  );
  const cacheDir = defaultCacheDir(process.env);
  const server = await startLlamaport({ port: 0, models, cacheDir, log: () => {}, plugins: join(dir, "plugins") });
  await server.ready;
  await server.engine.load("demo");
  const fresh = await settledSnapshot(server.engine);
  // A first round fills what is made once (the embedding context, grammars, compiled code): growth past it is a leak.
  const warmup = Math.ceil(requests / 10);
  await run(server.url, warmup);
  const before = await settledSnapshot(server.engine);
  const started = performance.now();
  const report = await run(server.url, requests);
  const seconds = (performance.now() - started) / 1000;
  const after = await settledSnapshot(server.engine);
  await server.stop();
  await rm(dir, { recursive: true, force: true });

  console.log(`soak: ${requests} requests in ${seconds.toFixed(1)} s, 8 at a time; outcomes ${JSON.stringify(report)}`);
  console.log("                        RSS        open fds   active sequences   queued requests");
  const rows: [string, ReturnType<typeof snapshot>][] = [
    ["at start", fresh],
    [`after ${warmup} (warm-up)`, before],
    [`after ${requests} more`, after],
  ];
  for (const [label, s] of rows)
    console.log(
      `${label.padEnd(23)} ${`${(s.rss / 1024 ** 2).toFixed(1)} MiB`.padEnd(10)} ${String(s.fds).padEnd(10)} ${String(s.active).padEnd(18)} ${s.queued}`,
    );
  console.log(`shutdown: ${await shutdownTime()}`);
}

/** `count` requests from a process of their own, so the server's numbers are its own; their outcomes by status. */
async function run(url: string, count: number): Promise<Record<string, number>> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--load", url, String(count), "8"], { stdout: "pipe", stderr: "inherit" });
  const report = JSON.parse(await new Response(child.stdout).text()) as Record<string, number>;
  await child.exited;
  return report;
}

/** Once disconnected streams have wound down (every sequence free, or 10 s), after a full garbage collection. */
async function settledSnapshot(engine: { loadedModels(): { activeSequences: number; queuedRequests: number }[] }) {
  for (let i = 0; i < 100 && busy(engine.loadedModels()); i++) await Bun.sleep(100);
  Bun.gc(true);
  return snapshot(engine.loadedModels());
}

function snapshot(models: { activeSequences: number; queuedRequests: number }[]) {
  return {
    rss: process.memoryUsage().rss,
    fds: readdirSync("/proc/self/fd").length,
    active: models.reduce((n, m) => n + m.activeSequences, 0),
    queued: models.reduce((n, m) => n + m.queuedRequests, 0),
  };
}

function busy(models: { activeSequences: number; queuedRequests: number }[]): boolean {
  return models.some((m) => m.activeSequences > 0 || m.queuedRequests > 0);
}

/** The requests, sent from a process of their own so the server's numbers are its own. */
async function load(url: string, total: number, concurrency: number): Promise<void> {
  const user = [{ role: "user", content: "tell me a story" }];
  const kinds: [string, Record<string, unknown>][] = [
    ["/v1/chat/completions", { model: "demo", stream: true, max_tokens: 24, messages: user }],
    ["/v1/chat/completions", { model: "demo", max_tokens: 8, messages: user }],
    ["/v1/completions", { model: "demo", prompt: "once upon a time", max_tokens: 8 }],
    ["/api/generate", { model: "demo", prompt: "once upon a time", options: { num_predict: 24 } }],
    ["/api/chat", { model: "demo", messages: user, stream: false, options: { num_predict: 8 } }],
    ["/v1/messages", { model: "demo", max_tokens: 24, stream: true, messages: user }],
    ["/v1/embeddings", { model: "demo", input: "a dog" }],
    ["/v1/messages/count_tokens", { model: "demo", messages: user }],
  ];
  const outcomes: Record<string, number> = {};
  let sent = 0;
  const one = async () => {
    const [path, body] = kinds[Math.floor(Math.random() * kinds.length)]!;
    const controller = new AbortController();
    // A third of the clients hang up after a random moment: mid-stream, mid-queue, or before the reply.
    const cut = Math.random() < 1 / 3 ? setTimeout(() => controller.abort(), Math.random() * 40) : undefined;
    try {
      const response = await fetch(`${url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      await response.arrayBuffer();
      outcomes[response.status] = (outcomes[response.status] ?? 0) + 1;
    } catch {
      outcomes.disconnected = (outcomes.disconnected ?? 0) + 1;
    } finally {
      clearTimeout(cut);
    }
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (sent < total) {
        sent++;
        await one();
      }
    }),
  );
  console.log(JSON.stringify(outcomes));
}

/** SIGTERM to exit of a real llamaport process while 4 streams are running. */
async function shutdownTime(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "llamaport-soak-"));
  const models = join(dir, "models.yaml");
  await Bun.write(models, stringify({ models: { demo: { source: "synthetic:demo", context: 2048, parallel: 4, threads: 1 } } }));
  const child = Bun.spawn([process.execPath, join(root, "src/main.ts"), "serve", "--port", "0", "--models", models], { stderr: "pipe" });
  let log = "";
  const decoder = new TextDecoder();
  const reader = child.stderr.getReader();
  while (!/listening on (http:\S+)/.test(log)) log += decoder.decode((await reader.read()).value);
  void (async () => {
    for (;;) if ((await reader.read()).done) return;
  })();
  const url = /listening on (http:\S+)/.exec(log)![1]!;
  const streams = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "demo",
          stream: true,
          ignore_eos: true,
          max_tokens: 1000,
          messages: [{ role: "user", content: "go" }],
        }),
      });
      const body = response.body!.getReader();
      await body.read();
      // Wrapped: an async function returning a promise would wait for the whole stream here.
      const rest = (async () => {
        let text = "";
        for (;;) {
          const { value, done } = await body.read();
          if (done) return text;
          text += decoder.decode(value);
        }
      })();
      return { rest };
    }),
  );
  const signalled = performance.now();
  child.kill("SIGTERM");
  const code = await child.exited;
  const ms = performance.now() - signalled;
  const finished = (await Promise.all(streams.map((s) => s.rest))).filter((text) => text.endsWith("data: [DONE]\n\n")).length;
  await rm(dir, { recursive: true, force: true });
  return `SIGTERM -> exit ${code} in ${ms.toFixed(0)} ms with 4 streams of up to 1000 tokens in flight (${finished} of 4 finished with [DONE])`;
}
