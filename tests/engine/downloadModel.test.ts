/** Model downloads (hf: sources, repositories with a quantization, URLs) against a local hub of the test's own: resume, faults, verification, clear errors. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, utimesSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { downloadModel } from "../../src/engine/download/downloadModel.ts";
import { downloadTarget, modelNameFor, resolvePullSource, sourceToUrl } from "../../src/engine/download/sources.ts";
import { cleanStaleDownloads, stagingFolder } from "../../src/engine/download/staleDownloads.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { type ModelHub, paddedGguf, startModelHub } from "../support/modelHub.ts";
import { bodyOf, postJson, startTestServer, tempDir, testCacheDir } from "../support/testServer.ts";

const MiB = 1024 ** 2;
let hub: ModelHub;
let gguf: Uint8Array;
/** 20 MiB: four of the downloader's 5 MiB chunks. */
let big: Uint8Array;

beforeAll(async () => {
  gguf = await Bun.file(await ensureSyntheticModel("demo", testCacheDir)).bytes();
  big = paddedGguf(gguf, 20 * MiB);
  hub = await startModelHub();
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q4_K_M.gguf", { bytes: gguf });
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q8_0.gguf", { bytes: big });
  hub.addRepoFile("acme/tiny-GGUF", "README.md", { bytes: new TextEncoder().encode("# tiny") });
});
afterAll(() => hub?.stop());

/** A fault that stalls the response holding byte `at` (when `when()` says so). */
const stallAt = (at: number, when: () => boolean) => (request: { ranged: boolean; start: number; end: number }) =>
  request.ranged && request.start <= at && request.end > at && when() ? { stallAfter: at - request.start } : undefined;
const same = (path: string, bytes: Uint8Array) =>
  Bun.file(path)
    .bytes()
    .then((b) => Buffer.from(b).equals(Buffer.from(bytes)));
const requestsSince = (mark: number, path: string) => hub.requests.slice(mark).filter((r) => r.path.endsWith(path));
const options = (cacheDir: string, more: Record<string, unknown> = {}) => ({ cacheDir, hfEndpoint: hub.url, ...more });

describe("sources", () => {
  test("hf: files map to the hub's resolve URL (revision optional); names come from file names", () => {
    expect(sourceToUrl("hf:acme/tiny/tiny.gguf", "https://hub")).toBe("https://hub/acme/tiny/resolve/main/tiny.gguf");
    expect(sourceToUrl("hf:acme/tiny@v2/sub/x.gguf", "https://hub")).toBe("https://hub/acme/tiny/resolve/v2/sub/x.gguf");
    expect(() => sourceToUrl("hf:acme/tiny", "https://hub")).toThrow("expected hf:<owner>/<repo>/<file.gguf>");
    expect(modelNameFor("Llama-3.2-1B-Instruct-Q4_K_M.gguf")).toBe("Llama-3.2-1B-Instruct-Q4_K_M");
    expect(modelNameFor("big-Q8_0-00001-of-00003.gguf")).toBe("big-Q8_0");
    expect(modelNameFor("my model (v2).gguf")).toBe("my-model-v2-");
  });

  test("a repository with a quantization is resolved through the hub's manifest, as node-llama-cpp's resolver asks for it", async () => {
    const mark = hub.requests.length;
    expect(await resolvePullSource("hf:acme/tiny-GGUF:Q8_0", { hfEndpoint: hub.url })).toEqual({
      source: "hf:acme/tiny-GGUF/tiny-Q8_0.gguf",
      fileName: "tiny-Q8_0.gguf",
    });
    // No quantization: node-llama-cpp's default, Q4_K_M; Ollama's hf.co/ form and a lower-case tag work the same.
    for (const text of ["hf:acme/tiny-GGUF", "hf.co/acme/tiny-GGUF", "hf.co/acme/tiny-GGUF:q4_k_m"])
      expect((await resolvePullSource(text, { hfEndpoint: hub.url }))?.source).toBe("hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf");
    const asked = hub.requests.slice(mark).map((r) => `${r.method} ${r.path} ${r.userAgent}`);
    expect(asked[0]).toBe("GET /v2/acme/tiny-GGUF/manifests/Q8_0 llama-cpp");
    expect(asked[1]).toBe("GET /v2/acme/tiny-GGUF/manifests/latest llama-cpp");
    await expect(resolvePullSource("hf:acme/tiny-GGUF:IQ1_S", { hfEndpoint: hub.url })).rejects.toThrow(
      'cannot resolve hf:acme/tiny-GGUF:IQ1_S: Cannot get quantization "IQ1_S"',
    );
    expect(await resolvePullSource("llama3.2:1b")).toBeUndefined();
    expect(await resolvePullSource("https://example.com/models/x%20y.gguf?download=1")).toEqual({
      source: "https://example.com/models/x%20y.gguf?download=1",
      fileName: "x y.gguf",
    });
  });
  test("sources that would leave their repository on the hub, or cannot be decoded, are a 400 before anything is asked", async () => {
    const mark = hub.requests.length;
    for (const text of [
      "hf:acme/tiny-GGUF/../../other/x.gguf",
      "hf:acme/tiny-GGUF/%2e%2E/x.gguf",
      "hf:acme/tiny-GGUF@../x.gguf",
      "hf:../x/y.gguf",
    ])
      await expect(resolvePullSource(text, { hfEndpoint: hub.url })).rejects.toMatchObject({
        status: 400,
        message: expect.stringContaining("is no file or folder name"),
      });
    for (const text of ["hf:../..", "hf.co/acme/..:Q4_K_M"])
      await expect(resolvePullSource(text, { hfEndpoint: hub.url })).rejects.toMatchObject({ status: 400 });
    // A malformed % escape was a URIError (a 500) when the file name was decoded.
    await expect(resolvePullSource(`${hub.url}/static/files/%E0%A4.gguf`)).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining("has a malformed % escape"),
    });
    expect(hub.requests.length).toBe(mark);
  });
});

describe("downloads", () => {
  test("a model is downloaded once through the hub's redirect, checked against its SHA-256, two callers share it, and only the model is left", async () => {
    using cache = tempDir();
    const mark = hub.requests.length;
    const starts: unknown[] = [];
    const [a, b] = await Promise.all([
      downloadModel("hf:acme/tiny-GGUF/tiny-Q8_0.gguf", options(cache.path, { onStart: (s: unknown) => starts.push(s) })),
      downloadModel("hf:acme/tiny-GGUF/tiny-Q8_0.gguf", options(cache.path, { onStart: (s: unknown) => starts.push(s) })),
    ]);
    expect(a).toBe(b);
    expect(await same(a, big)).toBe(true);
    const sha256 = createHash("sha256").update(big).digest("hex");
    expect(starts).toEqual([
      { url: `${hub.url}/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`, sha256, sizeBytes: big.byteLength },
      { url: `${hub.url}/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`, sha256, sizeBytes: big.byteLength },
    ]);
    // One HEAD probe of the hub, then the CDN: its headers, then ranges; every byte fetched once.
    expect(requestsSince(mark, "resolve/main/tiny-Q8_0.gguf").filter((r) => r.method === "HEAD")).toHaveLength(1);
    const ranges = requestsSince(mark, "/cdn/acme/tiny-GGUF/tiny-Q8_0.gguf").flatMap((r) => (r.range ? [r.range] : []));
    const fetched = ranges.reduce((sum, range) => {
      const [, from, to] = /bytes=(\d+)-(\d+)/.exec(range)!;
      return sum + Number(to) - Number(from) + 1;
    }, 0);
    expect(fetched).toBe(big.byteLength);
    const before = hub.requests.length;
    expect(await downloadModel("hf:acme/tiny-GGUF/tiny-Q8_0.gguf", options(cache.path))).toBe(a);
    expect(hub.requests.length).toBe(before);
    expect(readdirSync(join(cache.path, "models"))).toEqual([a.split("/").at(-1)!]);
  });

  test("a connection dropped mid-chunk is taken up again with a Range request from that chunk, not from the start", async () => {
    using cache = tempDir();
    const bytes = paddedGguf(gguf, 12 * MiB);
    let cut = false;
    const at = 7 * MiB; // inside the second chunk
    const path = hub.addFile("dropped.gguf", {
      bytes,
      fault: ({ ranged, start, end }) => {
        if (cut || !ranged || start > at || end <= at) return undefined;
        cut = true;
        return { cutAfter: at - start };
      },
    });
    const mark = hub.requests.length;
    const file = await downloadModel(`${hub.url}${path}`, { cacheDir: cache.path });
    expect(cut).toBe(true);
    expect(await same(file, bytes)).toBe(true);
    const starts = requestsSince(mark, path).flatMap((r) => (r.range ? [Number(/bytes=(\d+)-/.exec(r.range)![1])] : []));
    // Taken up again at the start of the chunk that was cut (5 MiB), while the first one was never asked for again.
    expect(starts.filter((start) => start === 5 * MiB).length).toBeGreaterThanOrEqual(1);
    expect(starts.filter((start) => start === 0)).toHaveLength(1);
  });

  test("a response that ends cleanly but short of its range is not taken as the chunk (it left zeros in the file before a patch to ipull)", async () => {
    using cache = tempDir();
    const bytes = paddedGguf(gguf, 12 * MiB);
    let shortened = false;
    // A chunked body that ends before the range does, with no error the client could see.
    const path = hub.addFile("short.gguf", {
      bytes,
      fault: ({ ranged, start, end }) => {
        if (shortened || !ranged || start > 7 * MiB || end <= 7 * MiB) return undefined;
        shortened = true;
        return { shortAfter: 7 * MiB - start };
      },
    });
    const file = await downloadModel(`${hub.url}${path}`, { cacheDir: cache.path });
    expect(shortened).toBe(true);
    expect(await same(file, bytes)).toBe(true);
  });

  test("a download that stalls is stopped after the stall timeout, and the next attempt resumes it with only the missing chunks", async () => {
    using cache = tempDir();
    let stalls = 0;
    const path = hub.addFile("stalls.gguf", {
      bytes: big,
      // At 16 MiB, in the last chunk, the first time: silence.
      fault: stallAt(16 * MiB, () => stalls++ === 0),
    });
    const url = `${hub.url}${path}`;
    const started = performance.now();
    const first = await downloadModel(url, { cacheDir: cache.path, stallTimeoutMs: 500 }).catch((e: Error) => e.message);
    expect(first).toBe(`download of ${url} stalled: no progress for 0.5 s; the next attempt resumes it`);
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(existsSync(downloadTarget(url, { cacheDir: cache.path }))).toBe(false);
    const mark = hub.requests.length;
    const file = await downloadModel(url, { cacheDir: cache.path });
    expect(await same(file, big)).toBe(true);
    // Only the chunk that stalled is asked for again.
    expect(requestsSince(mark, path).flatMap((r) => (r.range ? [r.range] : []))).toEqual([`bytes=${15 * MiB}-${20 * MiB - 1}`]);
  });

  test("a partial download left by a process that died is taken over and resumed", async () => {
    using cache = tempDir();
    let stalls = 0;
    const path = hub.addFile("orphan.gguf", {
      bytes: big,
      fault: stallAt(16 * MiB, () => stalls++ === 0),
    });
    const url = `${hub.url}${path}`;
    await downloadModel(url, { cacheDir: cache.path, stallTimeoutMs: 400 }).catch(() => {});
    // Move this process's part to the folder of a process that is gone, as if it had been killed.
    const models = join(cache.path, "models");
    const dead = Bun.spawnSync(["true"]).pid;
    const name = `${downloadTarget(url, { cacheDir: cache.path }).split("/").at(-1)}.ipull`;
    mkdirSync(stagingFolder(models, dead));
    renameSync(join(stagingFolder(models), name), join(stagingFolder(models, dead), name));
    const mark = hub.requests.length;
    expect(await same(await downloadModel(url, { cacheDir: cache.path }), big)).toBe(true);
    expect(requestsSince(mark, path).flatMap((r) => (r.range ? [r.range] : []))).toEqual([`bytes=${15 * MiB}-${20 * MiB - 1}`]);
    expect(readdirSync(models)).toEqual([name.slice(0, -".ipull".length)]);
  });

  test("a server that ignores Range, and cuts the connection once, still gives the whole file", async () => {
    using cache = tempDir();
    const bytes = paddedGguf(gguf, 8 * MiB);
    let cut = false;
    const path = hub.addFile("norange.gguf", {
      bytes,
      noRange: true,
      // The downloader reads only the headers of its first GET.
      fault: ({ index }) => {
        if (index !== 2) return undefined;
        cut = true;
        return { cutAfter: 3 * MiB };
      },
    });
    const mark = hub.requests.length;
    expect(await same(await downloadModel(`${hub.url}${path}`, { cacheDir: cache.path }), bytes)).toBe(true);
    expect(cut).toBe(true);
    expect(requestsSince(mark, path).every((r) => r.range === null)).toBe(true);
  });

  test("a server that sends no Content-Length gives the whole file (the downloader cut such files short before a patch to ipull)", async () => {
    using cache = tempDir();
    const bytes = paddedGguf(gguf, 12 * MiB + 777);
    const path = hub.addFile("unsized.gguf", { bytes, noLength: true });
    expect(await same(await downloadModel(`${hub.url}${path}`, { cacheDir: cache.path }), bytes)).toBe(true);
  });

  test("a server that takes the download's first request and never answers it is a stall, not a wait without end", async () => {
    using cache = tempDir();
    const silent = createServer((req, res) => {
      if (req.method === "HEAD") res.writeHead(200, { "content-length": String(gguf.byteLength), "accept-ranges": "bytes" }).end();
      // GET: no answer at all
    });
    await new Promise<void>((done) => silent.listen(0, "127.0.0.1", done));
    try {
      const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/silent.gguf`;
      const started = performance.now();
      await expect(downloadModel(url, { cacheDir: cache.path, stallTimeoutMs: 500 })).rejects.toThrow(
        `download of ${url} stalled: the server sent no answer for 0.5 s`,
      );
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  }, 20_000);

  test("a file larger than the disk of the cache is refused before a byte is written; an absurd size is refused at once", async () => {
    using cache = tempDir();
    const asked: string[] = [];
    // A server announcing `?size=` bytes on HEAD and GET (a hub's x-linked-size, or a lie), then sending only "GGUF".
    const huge = createServer((req, res) => {
      asked.push(`${req.method} ${req.headers.range ?? ""}`);
      res.writeHead(200, { "content-length": new URL(req.url!, "http://x").searchParams.get("size")!, "accept-ranges": "bytes" });
      if (req.method === "HEAD") res.end();
      else res.end("GGUF");
    });
    await new Promise<void>((done) => huge.listen(0, "127.0.0.1", done));
    try {
      const url = (size: number) => `http://127.0.0.1:${(huge.address() as AddressInfo).port}/huge.gguf?size=${size}`;
      await expect(downloadModel(url(2 ** 44), { cacheDir: cache.path })).rejects.toThrow(
        /: it is 16 TiB and the disk of the model cache has [\d.]+ [KMGT]?i?B free$/,
      );
      // 2^53 bytes ran the downloader out of memory laying out its chunks (a petabyte held the event loop for seconds).
      const started = performance.now();
      await expect(downloadModel(url(2 ** 53 - 1), { cacheDir: cache.path })).rejects.toThrow(
        "the server announces 9007199254740991 bytes, more than a download may have",
      );
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(asked.every((request) => !request.includes("bytes="))).toBe(true);
      expect(readdirSync(join(cache.path, "models"))).toEqual([]);
    } finally {
      huge.close();
    }
  });

  test("bad downloads are clear errors and leave nothing in the cache", async () => {
    using cache = tempDir();
    hub.addFile("not-a-model.gguf", { bytes: new TextEncoder().encode("<html>login</html>") });
    const cutShort = gguf.slice(0, gguf.byteLength - 1000);
    hub.addFile("cut-short.gguf", { bytes: cutShort });
    hub.addRepoFile("acme/liar", "liar.gguf", { bytes: gguf, wrongSha256: true });
    const failure = (source: string) =>
      downloadModel(source, options(cache.path)).then(
        () => "resolved",
        (e: Error) => e.message,
      );
    expect(await failure(`${hub.url}/static/files/nothing.gguf`)).toBe(
      `cannot download ${hub.url}/static/files/nothing.gguf: HTTP 404 (no such file)`,
    );
    expect(await failure(`${hub.url}/static/files/not-a-model.gguf`)).toBe(`${hub.url}/static/files/not-a-model.gguf is not a GGUF file`);
    // Served whole, but its header says its tensors go on: no server error tells, the GGUF does.
    expect(await failure(`${hub.url}/static/files/cut-short.gguf`)).toMatch(/was cut short: \d+ bytes, its tensors end at byte \d+$/);
    expect(await failure("hf:acme/liar/liar.gguf")).toContain("is corrupt: its SHA-256 is");
    expect(await failure("http://127.0.0.1:9/down.gguf")).toContain("cannot download http://127.0.0.1:9/down.gguf:");
    expect(readdirSync(join(cache.path, "models"))).toEqual([]);
  });

  test("a gated repository needs the token, which goes to the hub only when set", async () => {
    using cache = tempDir();
    hub.addRepoFile("acme/gated", "gated-Q4_K_M.gguf", { bytes: gguf });
    hub.gate("acme/gated", "hf_secret");
    // The manifest that picks a quantization's file is gated too: node-llama-cpp's resolver retries it with the token.
    // HF_TOKEN is read by the CLI's settings only: node-llama-cpp must not pick it up from the environment on its own.
    process.env.HF_TOKEN = "hf_secret";
    try {
      await expect(resolvePullSource("hf:acme/gated", { hfEndpoint: hub.url })).rejects.toThrow("cannot resolve hf:acme/gated:");
    } finally {
      delete process.env.HF_TOKEN;
    }
    expect((await resolvePullSource("hf:acme/gated", { hfEndpoint: hub.url, hfToken: "hf_secret" }))?.source).toBe(
      "hf:acme/gated/gated-Q4_K_M.gguf",
    );
    const message = await downloadModel("hf:acme/gated/gated-Q4_K_M.gguf", options(cache.path)).catch((e: Error) => e.message);
    expect(message).toContain("HTTP 401; a gated or private model needs a Hugging Face token: set HF_TOKEN");
    const wrong = await downloadModel("hf:acme/gated/gated-Q4_K_M.gguf", options(cache.path, { hfToken: "hf_wrong" })).catch(
      (e: Error) => e.message,
    );
    expect(wrong).toContain("HTTP 401; the Hugging Face token (HF_TOKEN) has no access");
    const mark = hub.requests.length;
    const file = await downloadModel("hf:acme/gated/gated-Q4_K_M.gguf", options(cache.path, { hfToken: "hf_secret" }));
    expect(await same(file, gguf)).toBe(true);
    expect(hub.requests.slice(mark).some((r) => r.authorization === "Bearer hf_secret")).toBe(true);
    // A URL elsewhere never gets it: not the HEAD, not the downloader's GETs (the same server by another origin).
    const elsewhere = hub.requests.length;
    const path = hub.addFile("elsewhere.gguf", { bytes: gguf });
    await downloadModel(`http://localhost:${new URL(hub.url).port}${path}`, options(cache.path, { hfToken: "hf_secret" }));
    const asked = hub.requests.slice(elsewhere);
    expect(asked.filter((r) => r.method === "GET").length).toBeGreaterThan(0);
    expect(asked.every((r) => r.authorization === null)).toBe(true);
  });

  test("cancelled by its only caller, a download stops, keeps its part, and the next call resumes it", async () => {
    using cache = tempDir();
    let stalls = 0;
    const path = hub.addFile("cancelled.gguf", {
      bytes: big,
      fault: stallAt(16 * MiB, () => stalls++ === 0),
    });
    const url = `${hub.url}${path}`;
    const controller = new AbortController();
    const pending = downloadModel(url, {
      cacheDir: cache.path,
      signal: controller.signal,
      onProgress: (p) => p.downloadedBytes >= 16 * MiB && controller.abort(),
    }).catch((e: Error) => e.message);
    expect(await pending).toBe("download cancelled");
    const mark = hub.requests.length;
    expect(await same(await downloadModel(url, { cacheDir: cache.path }), big)).toBe(true);
    expect(requestsSince(mark, path).flatMap((r) => (r.range ? [r.range] : []))).toEqual([`bytes=${15 * MiB}-${20 * MiB - 1}`]);
  });
});

/** A small tmpfs where the test may mount one (root on Linux). */
function fullDisk(dir: string): { mounted: boolean; [Symbol.dispose](): void } {
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stderr: "pipe" });
  return { mounted: mount.exitCode === 0, [Symbol.dispose]: () => void Bun.spawnSync(["umount", dir]) };
}

test("a full disk is a clear error for that request: up front for a file of known size, else when a write fails; the part is removed and the server keeps serving", async () => {
  using cache = tempDir();
  const models = join(cache.path, "models");
  mkdirSync(models);
  using disk = fullDisk(models);
  if (!disk.mounted) {
    console.warn("SKIPPING the full-disk download test: mounting a tmpfs needs root");
    return;
  }
  const known = `${hub.url}/acme/tiny-GGUF/resolve/main/tiny-Q8_0.gguf`;
  // Without a Content-Length nobody knows the size until the disk is full.
  const unknown = `${hub.url}${hub.addFile("unsized-20MiB.gguf", { bytes: big, noLength: true })}`;
  await using server = await startTestServer(
    {
      known: { source: known, context: 256, parallel: 1 },
      unknown: { source: unknown, context: 256, parallel: 1 },
    },
    { cacheDir: cache.path },
  );
  const expected = {
    known: /: it is 20 MiB and the disk of the model cache has [\d.]+ KiB free$/,
    unknown: /no space left on the disk of the model cache/,
  };
  for (const [model, message] of Object.entries(expected)) {
    const response = await postJson(`${server.url}/api/generate`, { model, prompt: "hi" });
    expect(response.status).toBe(503);
    expect((await bodyOf(response)).error).toMatch(message);
    expect(readdirSync(models, { recursive: true })).toEqual([]);
  }
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
});

test("stale files of dead writers are cleared at start; partial downloads young enough to resume, and live writers' files, stay", async () => {
  using cache = tempDir();
  const models = join(cache.path, "models");
  const dead = Bun.spawnSync(["true"]).pid;
  const deadFolder = stagingFolder(models, dead);
  mkdirSync(deadFolder, { recursive: true });
  mkdirSync(stagingFolder(models));
  const old = new Date(Date.now() - 2 * 24 * 3600_000);
  const files = {
    oldPart: join(deadFolder, "a.gguf.ipull"),
    youngPart: join(deadFolder, "b.gguf.ipull"),
    livePart: join(stagingFolder(models), "c.gguf.ipull"),
    formerPart: join(models, `d.gguf.part-${dead}`),
    tmp: join(models, `e.gguf.tmp-${dead}-0`),
    liveTmp: join(models, `f.gguf.tmp-${process.pid}-3`),
  };
  for (const file of Object.values(files)) writeFileSync(file, "x");
  utimesSync(files.oldPart, old, old);
  const logged: string[] = [];
  await cleanStaleDownloads(cache.path, (m) => logged.push(m));
  const left = Object.entries(files)
    .filter(([, file]) => existsSync(file))
    .map(([key]) => key);
  expect(left.sort()).toEqual(["livePart", "liveTmp", "youngPart"]);
  expect(logged).toHaveLength(3);
});

test("the server downloads a model named in models.yaml on first use, logs its progress in a few lines, and serves it", async () => {
  using cache = tempDir();
  // Slow enough (about 2 s) for the downloader to report progress some twenty times.
  hub.addRepoFile("acme/slow-GGUF", "slow-Q8_0.gguf", { bytes: paddedGguf(gguf, 8 * MiB), bytesPerSecond: 4 * MiB });
  const source = "hf:acme/slow-GGUF/slow-Q8_0.gguf";
  await using server = await startTestServer(
    {
      remote: { source, context: 256, parallel: 1 },
      gone: { source: "hf:acme/none/none.gguf", context: 256, parallel: 1 },
    },
    { cacheDir: cache.path, hfEndpoint: hub.url },
  );
  const reply = await bodyOf(
    postJson(`${server.url}/api/generate`, { model: "remote", prompt: "hi", stream: false, options: { num_predict: 3 } }),
  );
  expect(reply.eval_count, JSON.stringify(reply)).toBe(3);
  const lines = server.logs.filter((line) => line.includes("model remote"));
  expect(lines[0]).toBe(`info downloading model remote from ${hub.url}/acme/slow-GGUF/resolve/main/slow-Q8_0.gguf`);
  expect(lines.some((line) => /^info downloaded model remote \(8 MiB\) in [\d.]+ s to /.test(line))).toBe(true);
  // Every 5 s or tenth, never a line per report: in these 2 s, each progress line is in another tenth.
  const tenths = lines.flatMap((line) => /: (\d+)% of 8 MiB/.exec(line)?.[1] ?? []).map((percent) => Math.floor(Number(percent) / 10));
  expect(tenths.length).toBeGreaterThan(1);
  expect(new Set(tenths).size).toBe(tenths.length);
  const missing = await postJson(`${server.url}/v1/chat/completions`, { model: "gone", messages: [{ role: "user", content: "hi" }] });
  expect(missing.status).toBe(404);
  expect((await bodyOf(missing)).error.message).toContain("HTTP 404");
});
