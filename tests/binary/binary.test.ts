/** `npm run build`'s binary, copied alone into an empty folder: CLI, both seed endpoints, a dropped-in plugin, init and pull, no models.yaml, SIGTERM; and the runtime unpacker's races. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { completionMarker, hostTag, runtimeEntry, unpackRuntime } from "../../src/runtime/unpackRuntime.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { LogReader } from "../support/LogReader.ts";
import { startModelHub } from "../support/modelHub.ts";
import { tempDir, testCacheDir } from "../support/testServer.ts";

const root = resolve(import.meta.dir, "../..");
const builtBinary = join(root, "dist", "llamaport-linux-x64");
const skip = process.env.LLAMAPORT_SKIP_BINARY_TEST === "1";
const hostSupported = process.platform === "linux" && process.arch === "x64";

if (skip) console.warn("SKIPPING tests/binary/binary.test.ts: LLAMAPORT_SKIP_BINARY_TEST=1 (CI runs it; it builds the binary, ~5 s)");
else if (!hostSupported)
  console.warn(
    `SKIPPING tests/binary/binary.test.ts: it builds and runs the linux-x64 binary, this is ${process.platform}-${process.arch}`,
  );

describe.skipIf(skip || !hostSupported)("the compiled binary", () => {
  // Made in beforeAll: a skipped describe still runs its body, and would leave these folders behind.
  let folder: ReturnType<typeof tempDir>;
  let cache: ReturnType<typeof tempDir>;
  let elsewhere: ReturnType<typeof tempDir>;
  let binary: string;
  const children: Subprocess[] = [];

  const spawn = (args: string[], options: { cwd?: string; env?: Record<string, string>; binary?: string } = {}) => {
    // A clean environment: no settings from the developer's shell, and a cache of its own so the runtime unpacks fresh.
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: cache.path, LLAMAPORT_CACHE: cache.path, ...options.env };
    const child = Bun.spawn([options.binary ?? binary, ...args], {
      cwd: options.cwd ?? elsewhere.path,
      env,
      stdout: "pipe",
      stderr: "pipe",
    });
    children.push(child);
    return child;
  };

  beforeAll(async () => {
    folder = tempDir("llamaport-binary-");
    cache = tempDir("llamaport-binary-cache-");
    elsewhere = tempDir("llamaport-binary-cwd-");
    binary = join(folder.path, "llamaport");
    // Always built: the build takes a few seconds and a reused binary could be stale in ways mtimes do not show.
    const build = Bun.spawn([process.execPath, join(root, "scripts", "build.ts")], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([build.exited, new Response(build.stdout).text(), new Response(build.stderr).text()]);
    if (code !== 0) throw new Error(`npm run build failed (${code}):\n${out}${err}`);
    console.log(out.trim().split("\n").at(-1));
    copyFileSync(builtBinary, binary);
    await Bun.write(
      join(folder.path, "models.yaml"),
      "models:\n  demo:\n    source: synthetic:demo\n    context: 256\n    parallel: 2\n    threads: 1\n" +
        "  wide:\n    source: synthetic:demo\n    context: 8192\n    parallel: 1\n    threads: 1\n",
    );
    mkdirSync(join(folder.path, "plugins"));
  }, 120_000);

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    for (const dir of [folder, cache, elsewhere]) dir?.[Symbol.dispose]();
  });

  test("--version, --help, and an unknown flag (usage, exit 2)", async () => {
    const version = spawn(["--version"]);
    expect(await version.exited).toBe(0);
    expect(await new Response(version.stdout).text()).toMatch(/^llamaport \d+\.\d+\.\d+\n$/);
    const help = spawn(["--help"]);
    expect(await help.exited).toBe(0);
    expect(await new Response(help.stdout).text()).toContain("llamaport serve");
    const bad = spawn(["serve", "--nope"]);
    expect(await bad.exited).toBe(2);
    const stderr = await new Response(bad.stderr).text();
    expect(stderr).toContain('unknown option "--nope"');
    expect(stderr).toContain("Usage:");
  });

  test("alone in a folder: finds models.yaml beside itself, streams both seed endpoints, serves a dropped-in plugin, stops on SIGTERM", async () => {
    // Started from another folder, so models.yaml and plugins/ are found beside the executable, as after a download.
    const started = performance.now();
    const child = spawn(["serve", "--port", "0"]);
    const log = new LogReader(child.stderr as ReadableStream<Uint8Array>);
    const url = (await log.waitFor(/listening on (http:\/\/\S+)/, 30_000))[1]!;
    const listeningMs = performance.now() - started;

    const chat = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "demo", stream: true, max_tokens: 8, messages: [{ role: "user", content: "tell a joke" }] }),
    });
    expect(chat.status).toBe(200);
    expect(chat.headers.get("content-type")).toContain("text/event-stream");
    const sse = await chat.text();
    const events = sse
      .split("\n")
      .filter((l) => l.startsWith("data: ") && l !== "data: [DONE]")
      .map((l) => JSON.parse(l.slice(6)));
    expect(events.some((e) => typeof e.choices?.[0]?.delta?.content === "string")).toBe(true);
    expect(sse).toEndWith("event: done\ndata: [DONE]\n\n");
    const firstAnswerMs = performance.now() - started;

    const generate = await fetch(`${url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "demo", prompt: "tell me a joke", options: { num_predict: 8 } }),
    });
    expect(generate.status).toBe(200);
    const lines = (await generate.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.at(-1)).toMatchObject({ model: "demo", done: true });

    // Over 32 K characters: tokenized on the worker thread, which the build adds to the binary as an entry point.
    const counted = await fetch(`${url}/v1/messages/count_tokens`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "wide", messages: [{ role: "user", content: "the dog ran after the ball ".repeat(1500) }] }),
    });
    expect(await counted.text(), log.text).toMatch(/^\{"input_tokens":\d{4,}\}$/);

    // The plugin imports the virtual module "llamaport", which the binary must provide to files it loads from disk.
    await Bun.write(
      join(folder.path, "plugins", "hello.ts"),
      `import { definePlugin } from "llamaport";\n` +
        `export default definePlugin({ name: "hello", routes: [{ method: "GET", path: "/hello", handler: () => ({ hello: "world" }) }] });\n`,
    );
    let hello: unknown;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const response = await fetch(`${url}/hello`);
      if (response.status === 200) {
        hello = await response.json();
        break;
      }
      await Bun.sleep(100);
    }
    expect(hello, log.text).toEqual({ hello: "world" });

    child.kill("SIGTERM");
    const code = await Promise.race([child.exited, Bun.sleep(10_000).then(() => "still running after SIGTERM")]);
    await log.closed;
    expect(`${code}`, log.text).toBe("0");
    expect(log.text).toContain("SIGTERM: shutting down");
    // The server listened before the runtime was unpacked: unpacking is part of the engine's start, not of start-up.
    const unpacked = log.text.indexOf("node-llama-cpp runtime unpacked");
    expect(unpacked, log.text).toBeGreaterThan(log.text.indexOf("listening on"));
    expect(log.text).toContain(`models from ${join(folder.path, "models.yaml")}`);
    // The embedded runtime is node_modules as patch-package left it: both node-llama-cpp patches travel with the binary.
    const runtimes = readdirSync(join(cache.path, "runtime")).filter((name) => !name.includes(".tmp-"));
    expect(runtimes).toHaveLength(1);
    const patched = readFileSync(
      join(cache.path, "runtime", runtimes[0]!, "node_modules", "node-llama-cpp", "dist", "evaluator", "LlamaContext", "LlamaContext.js"),
      "utf8",
    );
    expect(patched).toContain("llamaport batching patch");
    expect(patched).toContain("llamaport speculative patch");
    console.log(
      `fresh cache: start -> listening ${listeningMs.toFixed(0)} ms, -> first streamed answer complete ${firstAnswerMs.toFixed(0)} ms`,
    );
  }, 60_000);

  test("init writes the files it carries; pull fetches from a hub into the models.yaml init wrote", async () => {
    const hub = await startModelHub();
    try {
      const gguf = await Bun.file(await ensureSyntheticModel("demo", testCacheDir)).bytes();
      hub.addRepoFile("acme/tiny-GGUF", "tiny-Q4_K_M.gguf", { bytes: gguf });
      const init = spawn(["init", "project"]);
      expect(await init.exited).toBe(0);
      const project = join(elsewhere.path, "project");
      for (const file of ["models.yaml", "models.schema.json", "plugins/llamaport.d.ts"])
        expect(readFileSync(join(project, file), "utf8")).toBe(readFileSync(join(root, file), "utf8"));
      expect(existsSync(join(project, "plugins", "lines.ts"))).toBe(true);
      const pull = spawn(["pull", "hf:acme/tiny-GGUF"], { cwd: project, env: { LLAMAPORT_HF_ENDPOINT: hub.url } });
      const [code, out, err] = await Promise.all([pull.exited, new Response(pull.stdout).text(), new Response(pull.stderr).text()]);
      expect(`${code}\n${err}`).toStartWith("0\n");
      expect(out).toStartWith(`tiny-Q4_K_M (234.1 KiB, SHA-256 `);
      expect(out).toContain(`added to ${join(project, "models.yaml")}`);
      expect(readFileSync(join(project, "models.yaml"), "utf8")).toContain(
        "  tiny-Q4_K_M:\n    source: hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf\n",
      );
    } finally {
      hub.stop();
    }
  }, 60_000);

  test("alone in a folder without models.yaml: watches plugins/ beside itself, and serves a models.yaml written there later", async () => {
    const bare = join(folder.path, "bare");
    mkdirSync(bare);
    linkSync(binary, join(bare, "llamaport"));
    const child = spawn(["serve", "--port", "0"], { binary: join(bare, "llamaport") });
    const log = new LogReader(child.stderr as ReadableStream<Uint8Array>);
    const url = (await log.waitFor(/listening on (http:\/\/\S+)/, 30_000))[1]!;
    await log.waitFor(/no models\.yaml found: serving the built-in registry until \S+ is created/, 10_000);
    expect(log.text).toContain(`plugins folder ${join(bare, "plugins")} does not exist yet`);
    mkdirSync(join(bare, "plugins"));
    writeFileSync(
      join(bare, "plugins", "hello.ts"),
      `import { definePlugin } from "llamaport";\nexport default definePlugin({ name: "hello", routes: [{ method: "GET", path: "/hello", handler: () => ({ hello: "world" }) }] });\n`,
    );
    await log.waitFor(/plugin hello loaded from/, 15_000);
    expect(await (await fetch(`${url}/hello`)).json()).toEqual({ hello: "world" });
    writeFileSync(join(bare, "models.yaml"), "models:\n  later:\n    source: synthetic:demo\n    context: 256\n    threads: 1\n");
    await log.waitFor(/models\.yaml was created: serving its models: later/, 15_000);
    const listed = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(listed.data.map((m) => m.id)).toEqual(["later"]);
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  }, 60_000);
});

// Fast (a tiny archive), so it runs even when the binary test is skipped.
describe("unpackRuntime", () => {
  async function tinyArchive(dir: string): Promise<string> {
    const entry = join(dir, "src", "node_modules", "node-llama-cpp", "dist", "index.js");
    mkdirSync(join(entry, ".."), { recursive: true });
    writeFileSync(entry, "export const ok = true;\n");
    const archive = join(dir, "runtime.tar.gz");
    expect(await Bun.spawn(["tar", "-czf", archive, "-C", join(dir, "src"), "node_modules"]).exited).toBe(0);
    return archive;
  }

  async function deadPid(): Promise<number> {
    const child = Bun.spawn(["true"]);
    await child.exited;
    return child.pid;
  }

  test("two unpacks at once: one folder wins, both get it, no temp folder is left", async () => {
    using dir = tempDir();
    const options = { archive: await tinyArchive(dir.path), id: "rt-1", cacheDir: join(dir.path, "cache") };
    const [a, b] = await Promise.all([unpackRuntime(options), unpackRuntime(options)]);
    expect(a).toBe(b);
    expect(readFileSync(runtimeEntry(a), "utf8")).toContain("ok = true");
    expect(existsSync(join(a, completionMarker))).toBe(true);
    expect(readdirSync(join(dir.path, "cache", "runtime"))).toEqual(["rt-1"]);
    // Unpacked already: the second start only checks the marker.
    expect(await unpackRuntime({ ...options, archive: "/nonexistent.tar.gz" })).toBe(a);
  });

  test("an interrupted unpack: its temp folder is removed (this host: once its process is gone; another host's: after 10 minutes), a folder without the marker is replaced", async () => {
    using dir = tempDir();
    const base = join(dir.path, "cache", "runtime");
    const pid = await deadPid();
    const crashedHere = join(base, `rt-0.tmp-${pid}-${hostTag}-a1`);
    const runningHere = join(base, `rt-0.tmp-${process.pid}-${hostTag}-a2`);
    const otherHostRecent = join(base, `rt-0.tmp-${pid}-0000beef-a3`);
    const otherHostOld = join(base, `rt-0.tmp-${pid}-0000beef-a4`);
    const unmarked = join(base, "rt-1");
    for (const folder of [crashedHere, runningHere, otherHostRecent, otherHostOld, unmarked])
      mkdirSync(join(folder, "node_modules"), { recursive: true });
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(otherHostOld, hourAgo, hourAgo);
    const folder = await unpackRuntime({ archive: await tinyArchive(dir.path), id: "rt-1", cacheDir: join(dir.path, "cache") });
    expect(folder).toBe(unmarked);
    expect(existsSync(join(folder, completionMarker))).toBe(true);
    expect(existsSync(runtimeEntry(folder))).toBe(true);
    expect(readdirSync(base).sort()).toEqual([otherHostRecent, runningHere, unmarked].map((p) => p.slice(base.length + 1)).sort());
  });

  test("a broken archive fails with tar's message and leaves nothing behind", async () => {
    using dir = tempDir();
    const archive = join(dir.path, "broken.tar.gz");
    writeFileSync(archive, "not a tarball");
    const cacheDir = join(dir.path, "cache");
    await expect(unpackRuntime({ archive, id: "rt-1", cacheDir })).rejects.toThrow(/tar exited with/);
    expect(readdirSync(join(cacheDir, "runtime"))).toEqual([]);
  });
});
