/**
 * Issue-12 measurement: `llamaport pull` of a 100 MB model from a local stand-in for Hugging Face (manifest, redirect,
 * ranges, SHA-256) to ready (verified, in models.yaml), with a cold model cache; then the same pull again (nothing to
 * fetch). `bun bench/pull.ts [--runs N] [--binary PATH]`.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeLlamaGguf } from "../src/gguf/writeLlamaGguf.ts";
import { startModelHub } from "../tests/support/modelHub.ts";

const root = resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const runs = Number(flag("--runs") ?? 1);
const binary = flag("--binary") && resolve(flag("--binary")!);
const command = binary ? [binary] : [process.execPath, join(root, "src", "main.ts")];

// A real model of about 100 MB (llama shape, Q8_0 weights), written once by the project's GGUF writer.
const modelFile = join(tmpdir(), "llamaport-bench-pull-100mb.gguf");
if (!existsSync(modelFile)) {
  console.log(`writing ${modelFile} ...`);
  await writeLlamaGguf(modelFile, {
    name: "bench-pull-100mb",
    seed: 1,
    embedding: 512,
    layers: 20,
    heads: 8,
    kvHeads: 4,
    feedForward: 1536,
    contextLength: 2048,
    vocabSize: 32000,
    tensorType: "Q8_0",
  });
}
const bytes = await Bun.file(modelFile).bytes();
const hub = await startModelHub();
hub.addRepoFile("acme/bench-GGUF", "bench-Q8_0.gguf", { bytes });
const megabytes = bytes.byteLength / 1e6;

async function timed(argv: string[], cwd: string, env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const child = Bun.spawn([...command, ...argv], { cwd, env, stdout: "pipe", stderr: "pipe" });
  const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text(), new Response(child.stdout).text()]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited with ${code}:\n${stderr}`);
  return performance.now() - started;
}

const results: { cold: number; again: number }[] = [];
for (let run = 0; run < runs; run++) {
  const dir = mkdtempSync(join(tmpdir(), "llamaport-bench-pull-"));
  // A fresh model cache each run; the unpacked engine runtime (binary) is shared, as on a user's second download.
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: dir,
    LLAMAPORT_CACHE: join(dir, "cache"),
    LLAMAPORT_HF_ENDPOINT: hub.url,
  };
  if (binary) env.LLAMAPORT_CACHE = join(tmpdir(), "llamaport-bench-pull-runtime");
  rmSync(join(env.LLAMAPORT_CACHE, "models"), { recursive: true, force: true });
  const cold = await timed(["pull", "hf:acme/bench-GGUF:Q8_0"], dir, env);
  const again = await timed(["pull", "hf:acme/bench-GGUF:Q8_0"], dir, env);
  results.push({ cold, again });
  rmSync(dir, { recursive: true, force: true });
}
hub.stop();

const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const cold = median(results.map((r) => r.cold));
console.log(
  `machine: ${cpus().length} CPUs (${cpus()[0]?.model}), load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}; ${binary ?? "from source"}`,
);
console.log(
  `llamaport pull of ${megabytes.toFixed(1)} MB from a local hub (manifest, redirect, ranges, SHA-256 check) to ready: ` +
    `${(cold / 1000).toFixed(2)} s (${(megabytes / (cold / 1000)).toFixed(0)} MB/s end to end, process start included), median of ${runs}`,
);
console.log(`the same pull again (already there): ${(median(results.map((r) => r.again)) / 1000).toFixed(2)} s`);
