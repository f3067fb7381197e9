/**
 * Seeded fuzzing of every POST route of every bundled plugin: hostile bodies must each get a 2xx or 4xx in time, while
 * `/health` (polled from another process) never waits more than 100 ms; then the server still serves. A failure prints
 * the seed and the case; `LLAMAPORT_FUZZ_SEED=<seed> bun test tests/server/fuzz.test.ts` runs the same cases again.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { builtinPlugins } from "../../src/plugins/builtinPlugins.ts";
import type { HealthWaits } from "../support/healthWait.ts";
import { hostileBodies, type HostileCase, random } from "../support/hostileBodies.ts";
import { LogReader } from "../support/LogReader.ts";
import { bodyOf, tempDir, testCacheDir, writeModelsYaml } from "../support/testServer.ts";

const seed = Number(process.env.LLAMAPORT_FUZZ_SEED) || Math.floor(Math.random() * 2 ** 31);
const casesPerRoute = 300;
const caseTimeoutMs = 15_000;
const healthLimitMs = 100;

const user = [{ role: "user", content: "hi" }];
/** A valid body per route, which the generators break; replies stay short (1-2 tokens). */
const validBodies: Record<string, Record<string, unknown>> = {
  "/v1/chat/completions": { model: "demo", messages: user, max_tokens: 2, stream: false, stop: ["\n"], temperature: 0.5 },
  "/v1/completions": { model: "demo", prompt: "hi", max_tokens: 2, stream: true, seed: 1 },
  "/v1/embeddings": { model: "demo", input: ["hi", "there"] },
  "/api/generate": {
    model: "demo",
    prompt: "hi",
    stream: false,
    options: { num_predict: 2, stop: ["x"] },
    keep_alive: "5m",
    format: "json",
  },
  "/api/chat": { model: "demo", messages: user, stream: true, options: { num_predict: 2, top_k: 10 } },
  "/api/show": { model: "demo" },
  "/api/embed": { model: "demo", input: "hi" },
  "/v1/messages": { model: "demo", max_tokens: 2, messages: user, system: "be brief", stop_sequences: ["!"] },
  "/v1/messages/count_tokens": { model: "demo", messages: user },
  "/api/embeddings": { model: "demo", prompt: "hi", keep_alive: "1m" },
  "/v1/responses": { model: "demo", input: [{ role: "user", content: "hi" }], max_output_tokens: 2, instructions: "be brief" },
  // A model the registry has: its file is there, so the pull answers at once.
  "/api/pull": { model: "demo", stream: false },
  // Model management: files are managed in models.yaml, so these always answer 501 whatever the body.
  "/api/create": { model: "x", from: "demo" },
  "/api/copy": { source: "demo", destination: "x" },
  "/api/push": { model: "demo" },
  "/api/blobs/:digest": {},
  // llama-server's API (the llamacpp plugin): the model is optional (the only one is the default).
  "/completion": { prompt: "hi", n_predict: 2, stream: true, temperature: 0.5, n_probs: 2, id_slot: -1 },
  "/completions": { model: "demo", prompt: ["hi", [1, "x"]], n_predict: 2, logit_bias: [["hi", false]] },
  "/infill": { input_prefix: "def f(", input_suffix: "):", input_extra: [{ filename: "a.py", text: "x = 1" }], n_predict: 2 },
  "/tokenize": { content: "hi there", add_special: true, with_pieces: true },
  "/detokenize": { tokens: [1, 2, 3] },
  "/apply-template": { messages: user },
  "/chat/completions/input_tokens": { model: "demo", messages: user },
  "/chat/completions": { messages: user, max_tokens: 2 },
  "/embedding": { content: "hi" },
  "/embeddings": { input: ["hi", "there"], embd_normalize: 2 },
};

const postRoutes = Object.values(builtinPlugins).flatMap((plugin) =>
  plugin.routes.filter((route) => route.method === "POST").map((route) => route.path),
);

let dir: ReturnType<typeof tempDir>;
let server: ReturnType<typeof Bun.spawn>;
let url: string;

beforeAll(async () => {
  dir = tempDir("llamaport-fuzz-");
  const models = await writeModelsYaml(dir.path, { demo: { source: "synthetic:demo", context: 256, parallel: 4, keep_alive: -1 } });
  server = Bun.spawn([process.execPath, join(import.meta.dir, "../../src/main.ts"), "serve", "--port", "0", "--models", models], {
    env: { ...process.env, LLAMAPORT_CACHE: testCacheDir },
    stderr: "pipe",
  });
  const log = new LogReader(server.stderr as ReadableStream<Uint8Array>);
  url = (await log.waitFor(/listening on (http:\/\/\S+)/, 30_000))[1]!;
  // Loaded before the clock starts: loading is not what is measured.
  const warm = await fetch(`${url}/api/generate`, { method: "POST", body: JSON.stringify({ model: "demo", prompt: "", keep_alive: -1 }) });
  expect(warm.status).toBe(200);
});
afterAll(() => {
  server?.kill("SIGKILL");
  dir?.[Symbol.dispose]();
});

/**
 * Polls /health from a process of its own, so the fuzzer's work is not counted; see tests/support/healthWait.ts for
 * why each wait is also measured in the server's main-thread CPU time (seen here at a load of 7 on 2 cores: 160 ms
 * waits during which the server's main thread ran 20 ms).
 */
function startHealthPoller(target: string, serverPid: number) {
  const script = `
    const { pollHealth } = await import(${JSON.stringify(join(import.meta.dir, "../support/healthWait.ts"))});
    const poller = pollHealth(${JSON.stringify(target)}, ${serverPid});
    process.stdin.on("data", async () => {
      console.log(JSON.stringify(await poller.stop()));
      process.exit(0);
    });`;
  const child = Bun.spawn([process.execPath, "-e", script], { stdin: "pipe", stdout: "pipe" });
  return {
    async stop(): Promise<HealthWaits> {
      child.stdin.write("stop\n");
      await child.stdin.flush();
      const out = await new Response(child.stdout).text();
      await child.exited;
      return JSON.parse(out);
    },
  };
}

async function send(path: string, hostile: HostileCase): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${url}${path.replace(":digest", "sha256:0123")}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: hostile.body,
    signal: AbortSignal.timeout(caseTimeoutMs),
  });
  await response.arrayBuffer(); // streams too: the whole reply must come
  return { status: response.status, ms: performance.now() - started };
}

test(`${casesPerRoute} hostile bodies per POST route: never a 5xx, never a frozen /health`, async () => {
  expect(postRoutes.sort()).toEqual(Object.keys(validBodies).sort());
  const next = random(seed);
  const work = postRoutes.flatMap((path) =>
    hostileBodies(validBodies[path] as never, casesPerRoute, next).map((hostile) => ({ path, hostile })),
  );
  const failures: string[] = [];
  const statuses: Record<number, number> = {};
  const poller = startHealthPoller(url, server.pid);
  let index = 0;
  const worker = async () => {
    while (index < work.length) {
      const { path, hostile } = work[index++]!;
      const outcome = await send(path, hostile).catch((error: Error) => ({ status: 0, ms: 0, error: error.message }));
      statuses[outcome.status] = (statuses[outcome.status] ?? 0) + 1;
      // 501 is an answer too: "this server does not do that" (Ollama's model management), never a fault.
      const answered =
        (outcome.status >= 200 && outcome.status < 300) || (outcome.status >= 400 && outcome.status < 500) || outcome.status === 501;
      if (!answered)
        failures.push(`${path} ${hostile.kind} (${hostile.detail}): ${"error" in outcome ? outcome.error : `HTTP ${outcome.status}`}`);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 8 }, worker));
  const seconds = (performance.now() - started) / 1000;
  const health = await poller.stop();
  // For the record: what the lead quotes (and reruns on a quiet machine).
  console.log(
    `fuzz seed ${seed}: ${work.length} cases in ${seconds.toFixed(1)} s, statuses ${JSON.stringify(statuses)}, ` +
      `${failures.length} failures, longest /health wait ${health.longestMs.toFixed(1)} ms over ${health.polls} polls ` +
      `(${health.longestBusyMs.toFixed(0)} ms of it with the server's main thread busy)`,
  );
  if (failures.length > 0) console.log(`fuzz seed ${seed} failures:\n${failures.slice(0, 20).join("\n")}`);
  expect(failures).toEqual([]);
  expect(health.longestBusyMs).toBeLessThan(healthLimitMs);
  // And the server still serves a normal request.
  const normal = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "demo", messages: user, max_tokens: 3 }),
  });
  expect(normal.status).toBe(200);
  expect((await bodyOf(normal)).choices[0].message.role).toBe("assistant");
}, 300_000);
