/** Issue-11 measurement: the time to compute a model file's sha256 (Ollama's digest) and that /api/tags computes it once. */
// Usage: bun bench/digest.ts [size=4G] — makes a file of that size in $TMPDIR (fallocate, else a sparse file), deletes it after.
import { spawnSync } from "node:child_process";
import { rmSync, truncateSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { parseByteSize } from "../src/config/byteSize.ts";
import { FileDigests } from "../src/engine/FileDigests.ts";
import { LogReader } from "../tests/support/LogReader.ts";

const size = parseByteSize(process.argv[2] ?? "4GiB");
const dir = join(process.env.TMPDIR ?? "/tmp", `llamaport-digest-${process.pid}`);
const file = join(dir, "big.gguf");
spawnSync("mkdir", ["-p", dir]);
// fallocate reserves real blocks (read back as zeros); where it is missing, a sparse file of the same size.
if (spawnSync("fallocate", ["-l", String(size), file]).status !== 0) {
  writeFileSync(file, "");
  truncateSync(file, size);
}

try {
  // 1. The digest alone, twice with a fresh cache (the first reads the disk, the second mostly the page cache), with
  // the event loop's longest stall while it runs (a 1 ms timer that should keep firing), then once more from memory.
  const gib = size / 1024 ** 3;
  console.log(`file: ${gib.toFixed(2)} GiB (${size} bytes); load average ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} cores`);
  let digests = new FileDigests();
  for (const pass of ["first read", "second read"]) {
    digests = new FileDigests();
    let last = performance.now();
    let longestStallMs = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      longestStallMs = Math.max(longestStallMs, now - last);
      last = now;
    }, 1);
    const started = performance.now();
    await digests.digest(file);
    const ms = performance.now() - started;
    clearInterval(timer);
    console.log(
      `digest, ${pass}: ${(ms / 1000).toFixed(2)} s (${(size / 1024 ** 2 / (ms / 1000)).toFixed(0)} MiB/s), longest event-loop stall ${longestStallMs.toFixed(1)} ms`,
    );
  }
  const again = performance.now();
  await digests.digest(file);
  console.log(`digest again, same file version: ${(performance.now() - again).toFixed(3)} ms`);

  // 2. Through the server: two /api/tags calls, and how many times the server logged computing a digest.
  const modelsFile = join(dir, "models.yaml");
  writeFileSync(modelsFile, `models:\n  big:\n    source: ${file}\n`);
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "../src/main.ts"), "serve", "--port", "0", "--models", modelsFile], {
    stderr: "pipe",
    stdout: "ignore",
    env: { ...process.env, LLAMAPORT_CACHE: join(dir, "cache") },
  });
  const log = new LogReader(child.stderr);
  try {
    const url = (await log.waitFor(/listening on (\S+)/, 30_000))[1]!;
    for (const round of [1, 2]) {
      const tagsStarted = performance.now();
      const tags = (await (await fetch(`${url}/api/tags`)).json()) as { models: { digest: string }[] };
      console.log(
        `/api/tags #${round}: ${(performance.now() - tagsStarted).toFixed(0)} ms, digest ${tags.models[0]?.digest.slice(0, 12)}…`,
      );
    }
    const computed = log.text.split("\n").filter((line) => line.includes("computed the sha256 of")).length;
    console.log(`digests computed by the server for two /api/tags: ${computed}`);
  } finally {
    child.kill();
    await child.exited;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
