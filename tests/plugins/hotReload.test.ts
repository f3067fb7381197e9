/** Hot reload on a running server: plugins added, changed (with a stream in flight), broken, removed; and models.yaml edits. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { bodyOf, postJson, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
let pluginsDir: string;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 2 } });
  pluginsDir = join(server.dir, "plugins");
});
afterAll(() => server?.[Symbol.asyncDispose]());

const helloPlugin = (version: number, extra = "") => `import { definePlugin, sse } from "llamaport";
${extra}
export default definePlugin({
  name: "hello",
  version: "${version}.0.0",
  error: (p) => ({ oops: p.message }),
  routes: [
    { method: "GET", path: "/hello", handler: () => ({ version: ${version} }) },
    { method: "GET", path: "/hello/stream", handler: () => sse((async function* () {
      for (let i = 0; i < 10; i++) { await Bun.sleep(40); yield { version: ${version}, i }; }
    })()) },
    { method: "GET", path: "/hello/throw", handler: () => { throw new Error("boom ${version}"); } },
  ],
});
`;

const hello = () => fetch(`${server.url}/hello`).then(async (r) => (r.status === 200 ? (await bodyOf(r)).version : r.status));
const pluginList = async () =>
  (await bodyOf(fetch(`${server.url}/plugins`))).plugins as {
    id: string;
    state: string;
    version?: string;
    routes: string[];
    lastError?: { message: string; line?: number; file?: string };
  }[];

describe("plugins folder", () => {
  test("add -> served; change -> new version while an old stream completes intact; break -> old keeps serving; delete -> 404", async () => {
    const file = join(pluginsDir, "hello.ts");
    await Bun.write(file, helloPlugin(1));
    expect(await waitFor(hello, (v) => v === 1)).toBe(1);
    expect((await pluginList()).find((p) => p.id === "hello")).toMatchObject({ state: "active", version: "1.0.0" });

    const stream = await fetch(`${server.url}/hello/stream`);
    const reader = stream.body!.getReader();
    await reader.read();
    await Bun.write(file, helloPlugin(2));
    expect(await waitFor(hello, (v) => v === 2)).toBe(2);
    let rest = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    const items = rest
      .trim()
      .split("\n\n")
      .map((e) => JSON.parse(e.slice(6)));
    expect(items.at(-1)).toEqual({ version: 1, i: 9 });
    expect(items.every((item) => item.version === 1)).toBe(true);

    await Bun.write(file, helloPlugin(3, "const broken = ;"));
    const failed = await waitFor(pluginList, (list) => list.find((p) => p.id === "hello")?.lastError !== undefined);
    const status = failed.find((p) => p.id === "hello")!;
    expect(status.state).toBe("active");
    expect(status.version).toBe("2.0.0");
    expect(status.lastError!.line).toBe(2);
    expect(status.lastError!.file).toContain("hello.ts");
    expect(await hello()).toBe(2);
    expect(server.logs.some((l) => l.startsWith("error plugin hello failed to load") && l.includes("hello.ts:2"))).toBe(true);

    rmSync(file);
    expect(await waitFor(hello, (v) => v === 404)).toBe(404);
    expect((await pluginList()).some((p) => p.id === "hello")).toBe(false);
  });

  test("a handler that throws answers in the plugin's own error format and is logged with its name", async () => {
    await Bun.write(join(pluginsDir, "hello.ts"), helloPlugin(4));
    await waitFor(hello, (v) => v === 4);
    const response = await fetch(`${server.url}/hello/throw`);
    expect(response.status).toBe(500);
    expect(await bodyOf(response)).toEqual({ oops: "internal error: boom 4" });
    expect(server.logs.some((l) => l.includes("[hello]") && l.includes("boom 4"))).toBe(true);
    rmSync(join(pluginsDir, "hello.ts"));
    await waitFor(hello, (v) => v === 404);
  });

  test("failures are contained: throwing setup, invalid definition, route collision; the others keep serving", async () => {
    await Bun.write(
      join(pluginsDir, "badsetup.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "badsetup", routes: [{ method: "GET", path: "/bad", handler: () => 1 }], setup() { throw new Error("no config"); } });`,
    );
    await Bun.write(join(pluginsDir, "invalid.ts"), `export default { name: "invalid", routes: [{ method: "FETCH", path: "x" }] };`);
    await Bun.write(
      join(pluginsDir, "collide.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "collide", routes: [{ method: "POST", path: "/v1/chat/completions", handler: () => 1 }] });`,
    );
    const list = await waitFor(pluginList, (l) =>
      ["badsetup", "invalid", "collide"].every((id) => l.find((p) => p.id === id)?.state === "failed"),
    );
    expect(list.find((p) => p.id === "badsetup")!.lastError!.message).toContain("no config");
    expect(list.find((p) => p.id === "invalid")!.lastError!.message).toContain("method must be one of");
    expect(list.find((p) => p.id === "collide")!.lastError!.message).toContain('already served by plugin "openai"');
    expect((await fetch(`${server.url}/bad`)).status).toBe(404);
    const chat = await postJson(`${server.url}/v1/chat/completions`, {
      model: "demo",
      max_tokens: 2,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(chat.status).toBe(200);
    for (const id of ["badsetup", "invalid", "collide"]) rmSync(join(pluginsDir, `${id}.ts`));
    await waitFor(pluginList, (l) => !l.some((p) => ["badsetup", "invalid", "collide"].includes(p.id)));
  });

  test("routes the router would refuse, or that take the host's own paths, fail only that plugin", async () => {
    await Bun.write(
      join(pluginsDir, "params.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "params", routes: [{ method: "GET", path: "/v1/models/:id/info", handler: () => 1 }] });`,
    );
    await Bun.write(
      join(pluginsDir, "health.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "health", routes: [{ method: "GET", path: "/health", handler: () => ({ status: "mine" }) }] });`,
    );
    const list = await waitFor(pluginList, (l) => ["params", "health"].every((id) => l.find((p) => p.id === id)?.state === "failed"));
    expect(list.find((p) => p.id === "params")!.lastError!.message).toContain("different parameter name");
    expect(list.find((p) => p.id === "health")!.lastError!.message).toContain("reserved by the host");
    expect(await bodyOf(fetch(`${server.url}/health`))).toEqual({ status: "ok" });
    expect((await fetch(`${server.url}/v1/models/demo`)).status).toBe(200);
    for (const id of ["params", "health"]) rmSync(join(pluginsDir, `${id}.ts`));
    await waitFor(pluginList, (l) => !l.some((p) => ["params", "health"].includes(p.id)));
  });

  test("a file named like a built-in replaces it, and deleting it brings the built-in back", async () => {
    await Bun.write(
      join(pluginsDir, "ollama.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "my-ollama", routes: [{ method: "GET", path: "/api/version", handler: () => ({ version: "mine" }) }] });`,
    );
    const version = () => bodyOf(fetch(`${server.url}/api/version`)).then((b) => b.version);
    expect(await waitFor(version, (v) => v === "mine")).toBe("mine");
    expect((await fetch(`${server.url}/api/tags`)).status).toBe(404);
    rmSync(join(pluginsDir, "ollama.ts"));
    expect(await waitFor(version, (v) => v !== "mine")).not.toBe("mine");
    expect((await fetch(`${server.url}/api/tags`)).status).toBe(200);
  });
});

test("a plugins folder deleted and made again is watched again", async () => {
  await Bun.write(join(pluginsDir, "hello.ts"), helloPlugin(7));
  expect(await waitFor(hello, (v) => v === 7)).toBe(7);
  rmSync(pluginsDir, { recursive: true });
  expect(await waitFor(hello, (v) => v === 404)).toBe(404);
  mkdirSync(pluginsDir);
  await Bun.write(join(pluginsDir, "hello.ts"), helloPlugin(8));
  expect(await waitFor(hello, (v) => v === 8)).toBe(8);
  await Bun.write(join(pluginsDir, "hello.ts"), helloPlugin(9));
  expect(await waitFor(hello, (v) => v === 9)).toBe(9);
  rmSync(join(pluginsDir, "hello.ts"));
  await waitFor(hello, (v) => v === 404);
});

describe("models.yaml", () => {
  const modelsFile = () => join(server.dir, "models.yaml");
  const names = async () => (await bodyOf(fetch(`${server.url}/v1/models`))).data.map((m: { id: string }) => m.id).sort();
  const writeModels = (models: Record<string, unknown>) => Bun.write(modelsFile(), stringify({ models }));

  test("add a model, break the file (previous registry keeps serving), fix it, remove one", async () => {
    const demo = { source: "synthetic:demo", context: 256, parallel: 2, threads: 1 };
    await writeModels({ demo, second: { ...demo, aliases: ["two"] } });
    expect(await waitFor(names, (n) => n.includes("second"))).toEqual(["demo", "second"]);
    const reply = await postJson(`${server.url}/api/generate`, { model: "two", prompt: "hi", stream: false, options: { num_predict: 3 } });
    // Served through the alias; Ollama's answer names the model as the client wrote it.
    expect(reply.status).toBe(200);
    expect((await bodyOf(reply)).model).toBe("two");

    await Bun.write(modelsFile(), "models:\n  demo:\n    source: synthetic:demo\n    contxt: 5\n");
    await waitFor(
      async () => server.logs.join("\n"),
      (l) => l.includes("models.demo.contxt"),
    );
    expect(server.logs.find((l) => l.includes("models.demo.contxt"))).toContain(":4:5:");
    expect(await names()).toEqual(["demo", "second"]);

    await writeModels({ demo, third: demo });
    expect(await waitFor(names, (n) => n.includes("third"))).toEqual(["demo", "third"]);
    expect((await postJson(`${server.url}/api/generate`, { model: "second", prompt: "hi" })).status).toBe(404);
  });
});
