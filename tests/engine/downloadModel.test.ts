/** Model downloads (hf: and http sources) against a local HTTP server of the test's own: once, atomic, clear errors. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanStaleDownloads, downloadModel, downloadTarget, sourceToUrl } from "../../src/engine/downloadModel.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { bodyOf, postJson, startTestServer, tempDir, testCacheDir } from "../support/testServer.ts";

let hub: ReturnType<typeof Bun.serve>;
const hits: string[] = [];
/** Range headers the hub was sent, by path. */
const ranges: Record<string, (string | null)[]> = {};
let gguf: Uint8Array;
/** How many times each path was asked for. */
const served: Record<string, number> = {};

/** A body that sends `bytes` and then ends cleanly: without a Content-Length, a cut the client cannot see. */
const endsAfter = (bytes: Uint8Array) =>
  new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });

beforeAll(async () => {
  gguf = await Bun.file(await ensureSyntheticModel("demo", testCacheDir)).bytes();
  hub = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      hits.push(path);
      const range = request.headers.get("range");
      ranges[path] = [...(ranges[path] ?? []), range];
      const count = (served[path] ?? 0) + 1;
      served[path] = count;
      const half = Math.floor(gguf.byteLength / 2);
      // First request: half the file, no length, a clean end. Later ones honour Range.
      if (path === "/files/unsized.gguf") {
        if (count === 1) return new Response(endsAfter(gguf.slice(0, half)));
        const from = Number(/^bytes=(\d+)-$/.exec(range ?? "")?.[1] ?? 0);
        return new Response(endsAfter(gguf.slice(from)), {
          status: from > 0 ? 206 : 200,
          headers: from > 0 ? { "content-range": `bytes ${from}-${gguf.byteLength - 1}/${gguf.byteLength}` } : {},
        });
      }
      // Cut once, then the whole file again from a server that ignores Range.
      if (path === "/files/norange.gguf")
        return new Response(count === 1 ? endsAfter(gguf.slice(0, half)) : gguf, {
          headers: count === 1 ? {} : { "content-length": String(gguf.byteLength) },
        });
      if (path === "/acme/tiny/resolve/main/tiny.gguf" || path === "/files/tiny.gguf") return new Response(gguf);
      if (path === "/files/not-a-model.gguf") return new Response("<html>login</html>");
      if (path === "/files/cut.gguf")
        return new Response(
          new ReadableStream({
            start(controller) {
              controller.enqueue(gguf.slice(0, 1000));
              controller.error(new Error("connection cut"));
            },
          }),
        );
      return new Response("missing", { status: 404 });
    },
  });
});
afterAll(() => hub?.stop(true));

const hfEndpoint = () => `http://127.0.0.1:${hub.port}`;

test("hf: sources map to the hub's resolve URL (revision optional)", () => {
  expect(sourceToUrl("hf:acme/tiny/tiny.gguf", "https://hub")).toBe("https://hub/acme/tiny/resolve/main/tiny.gguf");
  expect(sourceToUrl("hf:acme/tiny@v2/sub/x.gguf", "https://hub")).toBe("https://hub/acme/tiny/resolve/v2/sub/x.gguf");
  expect(() => sourceToUrl("hf:acme/tiny", "https://hub")).toThrow("expected hf:<owner>/<repo>/<file.gguf>");
});

test("a model is downloaded once, two callers at once share the download, and no partial file is left", async () => {
  using cache = tempDir();
  const before = hits.length;
  const [a, b] = await Promise.all([
    downloadModel("hf:acme/tiny/tiny.gguf", { cacheDir: cache.path, hfEndpoint: hfEndpoint() }),
    downloadModel("hf:acme/tiny/tiny.gguf", { cacheDir: cache.path, hfEndpoint: hfEndpoint() }),
  ]);
  expect(a).toBe(b);
  expect(Buffer.from(await Bun.file(a).bytes()).equals(Buffer.from(gguf))).toBe(true);
  expect(await downloadModel("hf:acme/tiny/tiny.gguf", { cacheDir: cache.path, hfEndpoint: hfEndpoint() })).toBe(a);
  expect(hits.length - before).toBe(1);
  expect(readdirSync(join(cache.path, "models"))).toEqual([a.split("/").at(-1)!]);
});

test("bad downloads are clear errors and leave nothing behind", async () => {
  using cache = tempDir();
  const url = (file: string) => `http://127.0.0.1:${hub.port}/files/${file}`;
  const failure = (file: string) =>
    downloadModel(url(file), { cacheDir: cache.path }).then(
      () => "resolved",
      (e: Error) => e.message,
    );
  expect(await failure("nothing.gguf")).toContain("HTTP 404");
  expect(await failure("not-a-model.gguf")).toContain("is not a GGUF file");
  expect(await failure("cut.gguf")).toContain("ECONNRESET");
  expect(readdirSync(join(cache.path, "models"))).toEqual([]);
});

test("a download cut without a Content-Length is not taken as complete, and the next request resumes it with a Range", async () => {
  using cache = tempDir();
  const url = `http://127.0.0.1:${hub.port}/files/unsized.gguf`;
  const first = await downloadModel(url, { cacheDir: cache.path }).catch((e: Error) => e.message);
  expect(first).toMatch(/was cut short: \d+ bytes, its tensors end at byte \d+; the next request resumes it/);
  const target = downloadTarget(url, { cacheDir: cache.path });
  expect(existsSync(target)).toBe(false);
  const path = await downloadModel(url, { cacheDir: cache.path });
  expect(Buffer.from(await Bun.file(path).bytes()).equals(Buffer.from(gguf))).toBe(true);
  expect(ranges["/files/unsized.gguf"]).toEqual([null, `bytes=${Math.floor(gguf.byteLength / 2)}-`]);
  expect(readdirSync(join(cache.path, "models"))).toEqual([target.split("/").at(-1)!]);
});

test("a server that ignores Range sends the whole file again, and the part is rewritten from the start", async () => {
  using cache = tempDir();
  const url = `http://127.0.0.1:${hub.port}/files/norange.gguf`;
  expect(await downloadModel(url, { cacheDir: cache.path }).catch((e: Error) => e.message)).toContain("cut short");
  const path = await downloadModel(url, { cacheDir: cache.path });
  expect(Buffer.from(await Bun.file(path).bytes()).equals(Buffer.from(gguf))).toBe(true);
  expect(ranges["/files/norange.gguf"]![1]).toStartWith("bytes=");
});

/** A small tmpfs where the test may mount one (root on Linux); else /dev/full, which fails every write with ENOSPC too. */
async function fullDisk(dir: string): Promise<{ kind: string; [Symbol.asyncDispose](): Promise<void> }> {
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stderr: "pipe" });
  if (mount.exitCode === 0) return { kind: "a 64 KiB tmpfs", [Symbol.asyncDispose]: async () => void Bun.spawnSync(["umount", dir]) };
  return { kind: "/dev/full", [Symbol.asyncDispose]: async () => {} };
}

test("a full disk during a download is a clear error for that request; the part is removed and the server keeps serving", async () => {
  using cache = tempDir();
  const models = join(cache.path, "models");
  mkdirSync(models);
  await using disk = await fullDisk(models);
  const url = `http://127.0.0.1:${hub.port}/files/tiny.gguf`;
  const target = downloadTarget(url, { cacheDir: cache.path });
  if (disk.kind === "/dev/full") symlinkSync("/dev/full", `${target}.part-${process.pid}`);
  await using server = await startTestServer({ remote: { source: url, context: 256, parallel: 1 } }, { cacheDir: cache.path });
  const response = await postJson(`${server.url}/api/generate`, { model: "remote", prompt: "hi" });
  expect(`${disk.kind}: ${response.status}`).toBe(`${disk.kind}: 503`);
  expect((await bodyOf(response)).error).toContain("no space left on the disk of the model cache");
  expect(readdirSync(models)).toEqual([]);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
});

test("stale files of dead writers are cleared at start; parts young enough to resume, and live writers' files, stay", async () => {
  using cache = tempDir();
  const models = join(cache.path, "models");
  mkdirSync(models);
  const dead = Bun.spawnSync(["true"]).pid;
  const old = new Date(Date.now() - 2 * 24 * 3600_000);
  const files = {
    oldPart: `a.gguf.part-${dead}`,
    youngPart: `b.gguf.part-${dead}`,
    tmp: `c.gguf.tmp-${dead}-0`,
    livePart: `d.gguf.part-${process.pid}`,
    liveTmp: `e.gguf.tmp-${process.pid}-3`,
  };
  for (const name of Object.values(files)) writeFileSync(join(models, name), "x");
  utimesSync(join(models, files.oldPart), old, old);
  const logged: string[] = [];
  await cleanStaleDownloads(cache.path, (m) => logged.push(m));
  expect(readdirSync(models).sort()).toEqual([files.youngPart, files.livePart, files.liveTmp].sort());
  expect(logged).toHaveLength(2);
});

test("the server downloads a model named in models.yaml on first use and serves it", async () => {
  using cache = tempDir();
  await using server = await startTestServer(
    {
      remote: { source: `http://127.0.0.1:${hub.port}/files/tiny.gguf`, context: 256, parallel: 1 },
      gone: { source: "hf:acme/none/none.gguf", context: 256, parallel: 1 },
    },
    { cacheDir: cache.path, hfEndpoint: hfEndpoint() },
  );
  const reply = await bodyOf(
    postJson(`${server.url}/api/generate`, { model: "remote", prompt: "hi", stream: false, options: { num_predict: 3 } }),
  );
  expect(reply.eval_count).toBe(3);
  const missing = await postJson(`${server.url}/v1/chat/completions`, { model: "gone", messages: [{ role: "user", content: "hi" }] });
  expect(missing.status).toBe(503);
  expect((await bodyOf(missing)).error.message).toContain("HTTP 404");
});
