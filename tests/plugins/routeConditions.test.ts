/** Routes with `when: { header }`: two plugins share a path and the request's headers pick one; same header twice is refused. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { bodyOf, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const plugin = (name: string, when: string, paramName: string) => `import { definePlugin } from "llamaport";
export default definePlugin({
  name: "${name}",
  error: (p) => ({ ${name}: p.message }),
  routes: [
    { method: "GET", path: "/things", ${when} handler: () => ({ from: "${name}" }) },
    { method: "GET", path: "/things/:${paramName}", ${when} handler: ({ params }) => ({ from: "${name}", id: params.${paramName} }) },
  ],
});
`;

const get = (path: string, headers: Record<string, string> = {}) => bodyOf(fetch(`${server.url}${path}`, { headers }));
const plugins = async () =>
  (await bodyOf(fetch(`${server.url}/plugins`))).plugins as { id: string; state: string; lastError?: { message: string } }[];

test("the header decides which plugin answers a shared path; each gets its parameters by its own names", async () => {
  const dir = join(server.dir, "plugins");
  await Bun.write(join(dir, "plain.ts"), plugin("plain", "", "id"));
  await Bun.write(join(dir, "special.ts"), plugin("special", 'when: { header: "X-Special-Version" },', "thing_id"));
  await waitFor(plugins, (list) => ["plain", "special"].every((id) => list.some((p) => p.id === id && p.state === "active")));
  expect(await get("/things")).toEqual({ from: "plain" });
  expect(await get("/things", { "x-special-version": "1" })).toEqual({ from: "special" });
  expect(await get("/things/7")).toEqual({ from: "plain", id: "7" });
  expect(await get("/things/7", { "X-Special-Version": "2" })).toEqual({ from: "special", id: "7" });

  // A third plugin for the same header on the same path is a clash: it fails to load, the others keep serving.
  await Bun.write(join(dir, "again.ts"), plugin("again", 'when: { header: "x-special-version" },', "id"));
  const again = await waitFor(plugins, (list) => list.some((p) => p.id === "again" && p.lastError));
  expect(again.find((p) => p.id === "again")!.lastError!.message).toBe(
    'route GET /things (requests with x-special-version) is already served by plugin "special"',
  );
  expect(await get("/things", { "x-special-version": "1" })).toEqual({ from: "special" });

  // Without the unconditional route, a request without the header finds no route: a 404, not the other plugin.
  await Bun.write(join(dir, "plain.ts"), "export default { name: 'plain', routes: [] };\n");
  await waitFor(
    () => fetch(`${server.url}/things`).then((r) => r.status),
    (status) => status === 404,
  );
  expect(await get("/things", { "x-special-version": "1" })).toEqual({ from: "special" });
});

test("`includes` picks requests whose header holds a text (any case); the rest go to the route without a condition", async () => {
  const dir = join(server.dir, "plugins");
  await Bun.write(join(dir, "plainer.ts"), plugin("plainer", "", "id").replaceAll("/things", "/stuff"));
  await Bun.write(
    join(dir, "streamy.ts"),
    plugin("streamy", 'when: { header: "Accept", includes: "Text/Event-Stream" },', "id").replaceAll("/things", "/stuff"),
  );
  await waitFor(plugins, (list) => ["plainer", "streamy"].every((id) => list.some((p) => p.id === id && p.state === "active")));
  expect(await get("/stuff", { accept: "text/event-stream" })).toEqual({ from: "streamy" });
  expect(await get("/stuff/3", { accept: "application/json, TEXT/EVENT-STREAM;q=0.5" })).toEqual({ from: "streamy", id: "3" });
  expect(await get("/stuff", { accept: "application/json" })).toEqual({ from: "plainer" });
  expect(await get("/stuff")).toEqual({ from: "plainer" });
  expect((await plugins()).find((p) => p.id === "streamy")).toMatchObject({
    routes: ["GET /stuff (with accept: text/event-stream)", expect.any(String)],
  });

  await Bun.write(
    join(dir, "empty.ts"),
    plugin("empty", 'when: { header: "accept", includes: "" },', "id").replaceAll("/things", "/empty"),
  );
  const failed = await waitFor(plugins, (list) => list.some((p) => p.id === "empty" && p.lastError));
  expect(failed.find((p) => p.id === "empty")!.lastError!.message).toContain(
    'when must be { header: "<header name>", includes?: "<text>" }',
  );
});
