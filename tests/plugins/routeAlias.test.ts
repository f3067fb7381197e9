/** Route aliases (`sameAs`): a path that answers as another plugin's route does, following reloads and replacements. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { bodyOf, postJson, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
let pluginsDir: string;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
  pluginsDir = join(server.dir, "plugins");
});
afterAll(() => server?.[Symbol.asyncDispose]());

const aliasPlugin = `import { definePlugin } from "llamaport";
export default definePlugin({
  name: "aliases",
  error: (p) => ({ mine: p.message }),
  routes: [
    { method: "GET", path: "/m", sameAs: "/v1/models" },
    { method: "GET", path: "/m/:id", sameAs: "/v1/models/:model" },
    { method: "POST", path: "/c", sameAs: "/v1/completions" },
    { method: "GET", path: "/nowhere", sameAs: "/v1/nothing" },
  ],
});
`;

const myOpenai = `import { definePlugin } from "llamaport";
export default definePlugin({
  name: "my-openai",
  error: (p) => ({ replaced: p.message }),
  routes: [
    { method: "GET", path: "/v1/models", handler: () => ({ replaced: true }) },
    { method: "GET", path: "/v1/models/:model", handler: ({ params }) => ({ replaced: params.model }) },
    { method: "POST", path: "/v1/chat/completions", handler: () => ({ replaced: "chat" }) },
  ],
});
`;

const pluginList = async () =>
  (await bodyOf(fetch(`${server.url}/plugins`))).plugins as { id: string; state: string; lastError?: { message: string } }[];

test("an alias answers as its target: same body, parameters by position, the target's body checks and error format", async () => {
  await Bun.write(join(pluginsDir, "aliases.ts"), aliasPlugin);
  const m = await waitFor(
    () => fetch(`${server.url}/m`),
    (r) => r.status === 200,
  );
  expect(await m.json()).toEqual(await bodyOf(fetch(`${server.url}/v1/models`)));
  expect(await bodyOf(fetch(`${server.url}/m/demo`))).toEqual(await bodyOf(fetch(`${server.url}/v1/models/demo`)));
  const completion = await bodyOf(postJson(`${server.url}/c`, { model: "demo", prompt: "hi", max_tokens: 3, temperature: 0 }));
  expect(completion.object).toBe("text_completion");
  expect(completion.usage.completion_tokens).toBe(3);
  // A bad body is checked and answered by the target route, in OpenAI's format.
  const bad = await postJson(`${server.url}/c`, { model: "demo", prompt: 5 });
  expect(bad.status).toBe(400);
  expect((await bodyOf(bad)).error.param).toBe("prompt");
  // No route serves the target: 404 in the alias plugin's own format.
  const nowhere = await fetch(`${server.url}/nowhere`);
  expect(nowhere.status).toBe(404);
  expect((await bodyOf(nowhere)).mine).toContain("/v1/nothing");
  // Metrics and the request's log line name the path the client called.
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  expect(metrics).toContain('llamaport_http_requests_total{method="POST",route="/c",status="200"} 1');
  expect(metrics).toContain('llamaport_http_requests_total{method="GET",route="/nowhere",status="404"} 1');
});

test("/openapi.json documents an alias with its target's body, and says when nothing serves its target", async () => {
  await Bun.write(join(pluginsDir, "aliases.ts"), aliasPlugin);
  const doc = await waitFor(
    () => bodyOf(fetch(`${server.url}/openapi.json`)),
    (d) => d.paths["/c"] !== undefined,
  );
  expect((await new Validator().validate(doc)).valid).toBe(true);
  const alias = doc.paths["/c"].post;
  expect(alias.tags).toEqual(["aliases"]);
  expect(alias.description).toContain('the same as POST /v1/completions (plugin "openai")');
  expect(alias.requestBody).toEqual(doc.paths["/v1/completions"].post.requestBody);
  expect(alias.requestBody.content["application/json"].schema.properties.prompt).toBeDefined();
  expect(doc.paths["/m/{id}"].get.parameters).toEqual([expect.objectContaining({ name: "id", in: "path" })]);
  expect(doc.paths["/nowhere"].get.description).toContain("no plugin serves now");
  rmSync(join(pluginsDir, "aliases.ts"));
  await waitFor(
    () => bodyOf(fetch(`${server.url}/openapi.json`)),
    (d) => d.paths["/c"] === undefined,
  );
});

test("replacing the target's plugin changes the alias too; removing the replacement brings the built-in back on both", async () => {
  await Bun.write(join(pluginsDir, "aliases.ts"), aliasPlugin);
  await waitFor(
    () => fetch(`${server.url}/m`).then((r) => r.status),
    (s) => s === 200,
  );
  await Bun.write(join(pluginsDir, "openai.ts"), myOpenai);
  expect(
    await waitFor(
      () => bodyOf(fetch(`${server.url}/m`)),
      (b) => b.replaced === true,
    ),
  ).toEqual({ replaced: true });
  expect(await bodyOf(fetch(`${server.url}/m/demo`))).toEqual({ replaced: "demo" });
  expect(await bodyOf(fetch(`${server.url}/v1/models`))).toEqual({ replaced: true });
  // The replacement has no /v1/completions: the alias says so in its own format.
  const gone = await postJson(`${server.url}/c`, { model: "demo", prompt: "hi" });
  expect(gone.status).toBe(404);
  expect((await bodyOf(gone)).mine).toContain("/v1/completions");
  rmSync(join(pluginsDir, "openai.ts"));
  const back = await waitFor(
    () => bodyOf(fetch(`${server.url}/m`)),
    (b) => b.object === "list",
  );
  expect(back.data.map((m: { id: string }) => m.id)).toEqual(["demo"]);
  expect((await postJson(`${server.url}/c`, { model: "demo", prompt: "hi", max_tokens: 1 })).status).toBe(200);
  rmSync(join(pluginsDir, "aliases.ts"));
  await waitFor(
    () => fetch(`${server.url}/m`).then((r) => r.status),
    (s) => s === 404,
  );
});

test("an alias with a handler, naming itself, or with other parameters fails to load, and only that plugin", async () => {
  const bad = (routes: string) => `import { definePlugin } from "llamaport";
export default definePlugin({ name: "badalias", routes: [${routes}] });`;
  const cases = [
    ['{ method: "GET", path: "/x", sameAs: "/v1/models", handler: () => 1 }', "no handler or body"],
    ['{ method: "GET", path: "/x", sameAs: "/x" }', "names the route itself"],
    ['{ method: "GET", path: "/x/:a", sameAs: "/v1/models" }', "same number of :parameters"],
    ['{ method: "GET", path: "/x", sameAs: "v1/models" }', 'starting with "/"'],
  ] as const;
  for (const [routes, message] of cases) {
    await Bun.write(join(pluginsDir, "badalias.ts"), bad(routes));
    const list = await waitFor(pluginList, (l) => l.find((p) => p.id === "badalias")?.lastError?.message.includes(message) === true);
    expect(list.find((p) => p.id === "badalias")!.state).toBe("failed");
    rmSync(join(pluginsDir, "badalias.ts"));
    await waitFor(pluginList, (l) => !l.some((p) => p.id === "badalias"));
  }
  expect((await fetch(`${server.url}/v1/models`)).status).toBe(200);
});

test("llama-server's un-prefixed routes (llamacpp plugin) follow a replaced openai plugin, and come back with the built-in", async () => {
  const chat = () =>
    bodyOf(postJson(`${server.url}/chat/completions`, { model: "demo", messages: [{ role: "user", content: "hi" }], max_tokens: 1 }));
  expect((await chat()).object).toBe("chat.completion");
  await Bun.write(join(pluginsDir, "openai.ts"), myOpenai);
  expect(await waitFor(chat, (b) => b.replaced !== undefined)).toEqual({ replaced: "chat" });
  expect(await bodyOf(fetch(`${server.url}/models`))).toEqual({ replaced: true });
  rmSync(join(pluginsDir, "openai.ts"));
  expect((await waitFor(chat, (b) => b.replaced === undefined)).object).toBe("chat.completion");
  expect((await bodyOf(fetch(`${server.url}/models`))).object).toBe("list");
});
