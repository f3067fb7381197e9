/** The plugins folder as users find it: a checkout's own copies of the built-ins are the built-ins; without a models.yaml, plugins/ and a later models.yaml are still picked up. */
import { expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { builtinPlugins } from "../../src/plugins/builtinPlugins.ts";
import { startLlamaport } from "../../src/server/startLlamaport.ts";
import { startTestServer, tempDir, testCacheDir } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const repoPlugins = resolve(import.meta.dir, "../../plugins");
const marker = `import { definePlugin } from "llamaport";\nexport default definePlugin({ name: "marker", routes: [{ method: "GET", path: "/marker", handler: () => ({}) }] });\n`;

test("a source checkout's plugins/ (the built-ins' own files) loads nothing twice and logs no replacement", async () => {
  await using server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } }, { plugins: repoPlugins });
  await server.settled();
  expect(server.logs.filter((line) => /replaces the built-in|loading plugin/.test(line))).toEqual([]);
  const plugins = (await (await fetch(`${server.url}/plugins`)).json()) as { plugins: { id: string; source: string }[] };
  expect(plugins.plugins.map((p) => `${p.id}:${p.source}`).sort()).toEqual(
    Object.keys(builtinPlugins)
      .map((id) => `${id}:builtin`)
      .sort(),
  );
});

test("a copy of a built-in is the built-in; edited it replaces it, and edited back the built-in serves again", async () => {
  await using server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
  const file = join(server.dir, "plugins", "ollama.ts");
  const original = readFileSync(join(repoPlugins, "ollama.ts"), "utf8");
  copyFileSync(join(repoPlugins, "ollama.ts"), file);
  copyFileSync(join(repoPlugins, "openai.ts"), join(server.dir, "plugins", "openai.ts"));
  // A plugin written after the copies: once it serves, the copies' file events have been handled too.
  writeFileSync(join(server.dir, "plugins", "marker.ts"), marker);
  await waitFor(
    () => fetch(`${server.url}/marker`),
    (r) => r.status === 200,
  );
  expect(server.logs.filter((line) => /plugin (ollama|openai)/.test(line))).toEqual([]);
  expect(server.plugins.list().find((p) => p.id === "ollama")?.source).toBe("builtin");
  writeFileSync(file, original.replace('version: "1.3.0"', 'version: "1.3.0-edited"'));
  const edited = await waitFor(
    async () => server.plugins.list().find((p) => p.id === "ollama"),
    (p) => p?.version === "1.3.0-edited",
  );
  expect(edited?.source).toBe("plugins/ollama.ts");
  expect(server.logs).toContain(`info plugin ollama replaces the built-in from ${file}`);
  writeFileSync(file, original);
  await waitFor(
    async () => server.plugins.list().find((p) => p.id === "ollama"),
    (p) => p?.source === "builtin",
  );
  expect(server.logs).toContain(`info plugin ollama: ${file} is the built-in's code again; serving the built-in`);
  expect((await fetch(`${server.url}/api/version`)).status).toBe(200);
});

test("without a models.yaml: the built-in registry serves, plugins/ beside the awaited file is watched, and a models.yaml created later is loaded", async () => {
  using home = tempDir();
  const logs: string[] = [];
  const awaited = join(home.path, "models.yaml");
  const running = await startLlamaport({
    port: 0,
    cacheDir: testCacheDir,
    awaitModelsFile: awaited,
    log: (level, message) => logs.push(`${level} ${message}`),
  });
  try {
    await running.ready;
    expect(logs).toContain(
      `info no models.yaml found: serving the built-in registry until ${awaited} is created (\`llamaport init\` writes one)`,
    );
    expect(logs).toContain(
      `info plugins folder ${join(home.path, "plugins")} does not exist yet; serving built-in plugins until it appears`,
    );
    expect((await running.engine.listModels()).map((m) => m.name)).toEqual(["demo"]);
    mkdirSync(join(home.path, "plugins"));
    writeFileSync(
      join(home.path, "plugins", "hello.ts"),
      `import { definePlugin } from "llamaport";\nexport default definePlugin({ name: "hello", routes: [{ method: "GET", path: "/hello", handler: () => ({ hello: "world" }) }] });\n`,
    );
    const hello = await waitFor(
      () => fetch(`${running.url}/hello`),
      (r) => r.status === 200,
    );
    expect(await hello.json()).toEqual({ hello: "world" });
    writeFileSync(awaited, "models:\n  later:\n    source: synthetic:demo\n    context: 256\n    threads: 1\n");
    await waitFor(
      async () => (await running.engine.listModels()).map((m) => m.name),
      (names) => names.join() === "later",
    );
    expect(logs).toContain(`info ${awaited} was created: serving its models: later`);
  } finally {
    await running.stop();
  }
});
