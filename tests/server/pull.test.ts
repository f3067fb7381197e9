/** Pulling models into a running server: Ollama's POST /api/pull through the official client, and the engine's pull() under it. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ollama } from "ollama";
import type { PullProgress } from "../../src/engine/types.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { type ModelHub, paddedGguf, startModelHub } from "../support/modelHub.ts";
import { bodyOf, postJson, startTestServer, type TestServer, tempDir } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const MiB = 1024 ** 2;
let hub: ModelHub;
let gguf: Uint8Array;
let server: TestServer;
let cache: ReturnType<typeof tempDir>;
/** The registry as a person wrote it, comments and blank lines included. */
const modelsYaml = `# My models. Comments and order must survive a pull.

models:
  # the offline demo
  demo:
    source: synthetic:demo # random weights
    context: 256
    parallel: 1
    threads: 1

# keys clients must send: none
`;

beforeAll(async () => {
  gguf = await Bun.file(await ensureSyntheticModel("demo", "/tmp/llamaport-pull-test-gguf")).bytes();
  hub = await startModelHub();
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q4_K_M.gguf", { bytes: gguf });
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q8_0.gguf", { bytes: paddedGguf(gguf, 6 * MiB) });
  hub.addRepoFile("acme/other-GGUF", "other-Q4_K_M.gguf", { bytes: gguf });
  hub.addFile("plain.gguf", { bytes: gguf });
  cache = tempDir();
  server = await startTestServer({}, { cacheDir: cache.path, hfEndpoint: hub.url });
  await Bun.write(join(server.dir, "models.yaml"), modelsYaml);
  await server.settled();
  await waitForModels(["demo"]);
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
  hub?.stop();
  cache?.[Symbol.dispose]();
});

async function waitForModels(names: string[]): Promise<void> {
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; await Bun.sleep(20)) {
    const listed = (await server.engine.listModels()).map((m) => m.name);
    if (names.every((name) => listed.includes(name))) return;
  }
  throw new Error(`models ${names.join(", ")} never appeared`);
}

describe("POST /api/pull (Ollama)", () => {
  test("the official client streams Ollama's progress lines; the model is then listed, served, and in models.yaml with every comment kept", async () => {
    const ollama = new Ollama({ host: server.url });
    const statuses: { status: string; digest?: string; total?: number; completed?: number }[] = [];
    for await (const line of await ollama.pull({ model: "hf.co/acme/tiny-GGUF:Q8_0", stream: true })) statuses.push(line);
    const bytes = paddedGguf(gguf, 6 * MiB);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    expect(statuses[0]).toEqual({ status: "pulling manifest" });
    const downloads = statuses.filter((s) => s.status.startsWith("pulling ") && s.digest);
    expect(downloads.length).toBeGreaterThan(0);
    for (const line of downloads)
      expect(line).toMatchObject({ status: `pulling ${sha256.slice(0, 12)}`, digest: `sha256:${sha256}`, total: bytes.byteLength });
    expect(downloads.at(-1)!.completed).toBe(bytes.byteLength);
    expect(statuses.slice(-3)).toEqual([{ status: "verifying sha256 digest" }, { status: "writing manifest" }, { status: "success" }]);

    // Ollama's hf.co name is the model's name: clients use it as they pulled it.
    const tags = await ollama.list();
    expect(tags.models.map((m) => m.name)).toContain("hf.co/acme/tiny-GGUF:Q8_0");
    const reply = await ollama.chat({
      model: "hf.co/acme/tiny-GGUF:Q8_0",
      messages: [{ role: "user", content: "hi" }],
      options: { num_predict: 3 },
    });
    expect(reply.eval_count).toBe(3);
    const text = readFileSync(join(server.dir, "models.yaml"), "utf8");
    expect(text).toStartWith(modelsYaml.slice(0, modelsYaml.indexOf("\n# keys")));
    expect(text).toEndWith(
      `  # pulled from hf.co/acme/tiny-GGUF:Q8_0 on ${new Date().toISOString().slice(0, 10)}\n  hf.co/acme/tiny-GGUF:Q8_0:\n    source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf\n\n# keys clients must send: none\n`,
    );
  });

  test("stream: false (the client's default) answers one final object; pulling again is quick and changes nothing", async () => {
    const ollama = new Ollama({ host: server.url });
    expect(await ollama.pull({ model: "hf:acme/other-GGUF" })).toEqual({ status: "success" } as never);
    await waitForModels(["other-Q4_K_M"]);
    const before = readFileSync(join(server.dir, "models.yaml"), "utf8");
    const requests = hub.requests.length;
    expect(await ollama.pull({ model: "other-Q4_K_M" })).toEqual({ status: "success" } as never);
    expect(await ollama.pull({ model: "hf:acme/other-GGUF:Q4_K_M" })).toEqual({ status: "success" } as never);
    expect(readFileSync(join(server.dir, "models.yaml"), "utf8")).toBe(before);
    // Only the manifest was asked for again (to learn which file the quantization is); no byte was downloaded.
    expect(hub.requests.slice(requests).map((r) => r.path)).toEqual(["/v2/acme/other-GGUF/manifests/Q4_K_M"]);
  });

  test("what cannot be pulled is an error in Ollama's format, before any progress line", async () => {
    const ollama = new Ollama({ host: server.url });
    // An Ollama library name: there is no Ollama registry here.
    const library = await postJson(`${server.url}/api/pull`, { model: "llama3.2:1b" });
    expect(library.status).toBe(404);
    expect((await bodyOf(library)).error).toContain(`"llama3.2:1b" is no model in the registry and no source llamaport can download`);
    await expect(ollama.pull({ model: "llama3.2:1b", stream: true })).rejects.toThrow("hf:<owner>/<repo>:<quant>");
    const missing = await postJson(`${server.url}/api/pull`, { model: "hf:acme/tiny-GGUF:IQ1_S", stream: false });
    expect(missing.status).toBe(404);
    expect((await bodyOf(missing)).error).toContain('Cannot get quantization "IQ1_S"');
    // A hostile source: a 400, never a 500 (a malformed % escape was one), and nothing asked of any server.
    const mark = hub.requests.length;
    for (const model of [`${hub.url}/static/files/%E0%A4.gguf`, "hf:acme/tiny-GGUF/../../x.gguf"]) {
      const hostile = await postJson(`${server.url}/api/pull`, { model, stream: false });
      expect(hostile.status).toBe(400);
      expect(Object.keys(await bodyOf(hostile))).toEqual(["error"]);
    }
    expect(hub.requests.length).toBe(mark);
    const nothing = await postJson(`${server.url}/api/pull`, {});
    expect(nothing.status).toBe(400);
    expect(await bodyOf(nothing)).toEqual({ error: "model is required" });
  });

  test("a failure after progress began ends the stream with Ollama's error line", async () => {
    hub.addRepoFile("acme/liar-GGUF", "liar-Q4_K_M.gguf", { bytes: gguf, wrongSha256: true });
    const response = await postJson(`${server.url}/api/pull`, { model: "hf:acme/liar-GGUF" });
    expect(response.status).toBe(200);
    const lines = (await response.text())
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines[0]).toEqual({ status: "pulling manifest" });
    expect(lines.at(-2)).toEqual({ status: "verifying sha256 digest" });
    expect(lines.at(-1).error).toContain("is corrupt: its SHA-256 is");
    expect((await server.engine.listModels()).map((m) => m.name)).not.toContain("liar-Q4_K_M");
  });
});

describe("engine.pull()", () => {
  test("reports its stages in order, derives the name from the file, and refuses a name taken by another model", async () => {
    const stages: PullProgress["stage"][] = [];
    const result = await server.engine.pull({
      source: `${hub.url}/static/files/plain.gguf`,
      onProgress: (event) => stages.at(-1) !== event.stage && stages.push(event.stage),
    });
    expect(stages).toEqual(["resolving", "downloading", "verifying", "registering"]);
    expect(result).toMatchObject({ model: "plain", added: true, savedTo: join(server.dir, "models.yaml"), sizeBytes: gguf.byteLength });
    expect(result.sha256).toBeUndefined(); // a plain server announces none
    await expect(server.engine.pull({ source: "hf:acme/tiny-GGUF", name: "plain" })).rejects.toThrow(
      'the name "plain" is taken by another model',
    );
    await expect(server.engine.pull({ source: "hf:acme/tiny-GGUF", name: "bad name!" })).rejects.toThrow(
      "name must be a name starting with",
    );
    // A name for a model the registry has would be ignored: it is refused instead.
    await expect(server.engine.pull({ source: "plain", name: "renamed" })).rejects.toThrow(
      '"plain" is a model in the registry already: a name is for a new model',
    );
    const named = await server.engine.pull({ source: "hf:acme/tiny-GGUF", name: "tiny" });
    expect(named).toMatchObject({ model: "tiny", source: "hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf", added: true });
  });

  test("two pulls of one new model at once share the download and add it once", async () => {
    hub.addRepoFile("acme/twice-GGUF", "twice-Q4_K_M.gguf", { bytes: gguf });
    const [a, b] = await Promise.all([
      server.engine.pull({ source: "hf:acme/twice-GGUF" }),
      server.engine.pull({ source: "hf:acme/twice-GGUF" }),
    ]);
    expect([a.model, b.model]).toEqual(["twice-Q4_K_M", "twice-Q4_K_M"]);
    expect([a.added, b.added].sort()).toEqual([false, true]);
    expect(readFileSync(join(server.dir, "models.yaml"), "utf8").split("\n  twice-Q4_K_M:\n")).toHaveLength(2);
    expect(
      hub.requests.filter((r) => r.path === "/cdn/acme/twice-GGUF/twice-Q4_K_M.gguf" && r.method === "GET").length,
    ).toBeLessThanOrEqual(2);
  });

  test("a server without a models.yaml keeps what it pulls in memory, and says so", async () => {
    using otherCache = tempDir();
    await using bare = await startTestServer({}, { cacheDir: otherCache.path, hfEndpoint: hub.url, models: undefined });
    const result = await bare.engine.pull({ source: "hf:acme/tiny-GGUF" });
    expect(result).toMatchObject({ model: "tiny-Q4_K_M", added: true, savedTo: undefined });
    expect((await bare.engine.listModels()).map((m) => m.name)).toEqual(["demo", "tiny-Q4_K_M"]);
  });

  test("models.yaml edited during a download keeps the edit; one the server cannot read is a clear 503, and the next pull adds the kept download", async () => {
    using otherCache = tempDir();
    await using own = await startTestServer({}, { cacheDir: otherCache.path, hfEndpoint: hub.url });
    const file = join(own.dir, "models.yaml");
    writeFileSync(file, "models:\n  demo:\n    source: synthetic:demo\n");
    await own.settled();
    hub.addFile("slow.gguf", { bytes: paddedGguf(gguf, 2 * MiB), bytesPerSecond: 4 * MiB });
    let edited = false;
    const pulled = await own.engine.pull({
      source: `${hub.url}/static/files/slow.gguf`,
      onProgress: (event) => {
        if (event.stage !== "downloading" || edited) return;
        edited = true;
        writeFileSync(file, "models:\n  demo:\n    source: synthetic:demo\n  mine: # added by hand\n    source: synthetic:tiny-f32\n");
      },
    });
    expect(edited).toBe(true);
    expect(pulled).toMatchObject({ model: "slow", added: true });
    expect(readFileSync(file, "utf8")).toContain("  mine: # added by hand\n    source: synthetic:tiny-f32\n  # pulled from");

    // Someone's edit in progress: the server keeps its registry, and a pull says what is wrong instead of a 500.
    writeFileSync(file, "models:\n  demo:\n    source: synthetic:demo\n  broken: [\n");
    const refused = await postJson(`${own.url}/api/pull`, { model: `${hub.url}/static/files/plain.gguf`, stream: false });
    expect(refused.status).toBe(503);
    const { error } = await bodyOf(refused);
    expect(error).toContain('is downloaded, but cannot be added to models.yaml as "plain": ');
    expect(error).toContain(`${file}:`);
    expect(readFileSync(file, "utf8")).toEndWith("broken: [\n");
    // Fixed (as a flow mapping this time): the next pull adds the model without fetching it again.
    writeFileSync(file, "models: {demo: {source: synthetic:demo}}\n");
    const mark = hub.requests.length;
    const again = await postJson(`${own.url}/api/pull`, { model: `${hub.url}/static/files/plain.gguf`, stream: false });
    expect(await bodyOf(again)).toEqual({ status: "success" });
    expect(hub.requests.slice(mark).filter((r) => r.method === "GET")).toEqual([]);
    expect(readFileSync(file, "utf8")).toBe(
      `models: {demo: {source: synthetic:demo}, plain: {source: ${hub.url}/static/files/plain.gguf}}\n`,
    );
  });
});

describe("what remote clients may pull", () => {
  test("a server listening beyond loopback pulls from the hub only: a URL elsewhere is a 403 before anything is fetched", async () => {
    using otherCache = tempDir();
    await using exposed = await startTestServer({}, { host: "0.0.0.0", cacheDir: otherCache.path, hfEndpoint: hub.url });
    const url = `http://127.0.0.1:${exposed.port}`;
    // The same file as the hub serves, by another origin: any server the machine reaches (169.254.169.254, the LAN).
    const elsewhere = `http://localhost:${new URL(hub.url).port}/static/files/plain.gguf`;
    const mark = hub.requests.length;
    for (const stream of [true, false]) {
      const refused = await postJson(`${url}/api/pull`, { model: elsewhere, stream });
      expect(refused.status).toBe(403);
      expect((await bodyOf(refused)).error).toContain("this server pulls new models from Hugging Face only");
    }
    await expect(exposed.engine.pull({ source: elsewhere })).rejects.toThrow("it listens beyond this machine");
    expect(hub.requests.length).toBe(mark);
    // The hub (hf: sources, Ollama's hf.co/ names, URLs on the hub endpoint) stays open to them.
    const ollama = new Ollama({ host: url });
    expect(await ollama.pull({ model: "hf.co/acme/other-GGUF" })).toMatchObject({ status: "success" });
    expect((await postJson(`${url}/api/pull`, { model: `${hub.url}/static/files/plain.gguf`, stream: false })).status).toBe(200);
    expect((await exposed.engine.listModels()).map((m) => m.name)).toEqual(["hf.co/acme/other-GGUF", "plain"]);
    // --pull-from says otherwise either way.
    await using strict = await startTestServer({}, { cacheDir: otherCache.path, hfEndpoint: hub.url, pullFrom: "hub" });
    expect((await postJson(`${strict.url}/api/pull`, { model: elsewhere, stream: false })).status).toBe(403);
    await using open = await startTestServer({}, { host: "0.0.0.0", cacheDir: otherCache.path, hfEndpoint: hub.url, pullFrom: "anywhere" });
    const allowed = await postJson(`http://127.0.0.1:${open.port}/api/pull`, { model: elsewhere, stream: false });
    expect(await bodyOf(allowed)).toEqual({ status: "success" });
  });
});

describe("shutdown", () => {
  test("a pull still downloading when the grace period ends stops with Ollama's error line; its part stays to be resumed", async () => {
    using otherCache = tempDir();
    const own = await startTestServer({}, { cacheDir: otherCache.path, hfEndpoint: hub.url });
    hub.addRepoFile("acme/long-GGUF", "long-Q4_K_M.gguf", { bytes: paddedGguf(gguf, 64 * MiB), bytesPerSecond: 4 * MiB });
    const response = await postJson(`${own.url}/api/pull`, { model: "hf:acme/long-GGUF" });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    // The downloader writes whole 5 MiB chunks: wait for the first on disk, so there is something to resume.
    const models = join(otherCache.path, "models");
    const parts = () =>
      (existsSync(models) ? readdirSync(models) : [])
        .filter((name) => name.startsWith(".download-"))
        .flatMap((folder) => readdirSync(join(models, folder)));
    await waitFor(
      async () => parts(),
      (names) => names.length > 0,
      20_000,
    );
    const stopping = performance.now();
    const stopped = own.stop({ graceMs: 200 });
    let text = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value);
    await stopped;
    // Ended right after the grace period (a pull ran on until the server closed its connection 4 s later, cut mid-line).
    expect(performance.now() - stopping).toBeLessThan(2_000);
    expect(JSON.parse(text.trim().split("\n").at(-1)!)).toEqual({ error: "the server is shutting down; try again once it is back" });
    expect(parts()).toEqual([expect.stringMatching(/-long-Q4_K_M\.gguf\.ipull$/)]);
    rmSync(own.dir, { recursive: true, force: true });
  });
});
