/** Model downloads (hf: and http sources) against a local HTTP server of the test's own: once, atomic, clear errors. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { downloadModel, sourceToUrl } from "../../src/engine/downloadModel.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { bodyOf, postJson, startTestServer, tempDir, testCacheDir } from "../support/testServer.ts";

let hub: ReturnType<typeof Bun.serve>;
const hits: string[] = [];
let gguf: Uint8Array;

beforeAll(async () => {
  gguf = await Bun.file(await ensureSyntheticModel("demo", testCacheDir)).bytes();
  hub = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      hits.push(path);
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
  expect(await failure("cut.gguf")).not.toBe("resolved");
  expect(readdirSync(join(cache.path, "models"))).toEqual([]);
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
