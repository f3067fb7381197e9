/** The README's "write a plugin" example (also what `llamaport init` writes), copied from README.md into a plugins folder, works when dropped in. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bodyOf, postJson, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const readme = readFileSync(join(import.meta.dir, "../../README.md"), "utf8");
const example = /```ts\n(\/\/ plugins\/lines\.ts[\s\S]*?)```/.exec(readme)![1]!;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
});
afterAll(() => server?.[Symbol.asyncDispose]());

test("the example is at most 30 lines, and it is the one `llamaport init` writes", () => {
  expect(example.trimEnd().split("\n").length).toBeLessThanOrEqual(30);
  expect(example).toBe(readFileSync(join(import.meta.dir, "../../src/cli/templates/lines.ts"), "utf8"));
});

test("dropped into plugins/, it serves its own streaming format; bad input gets its own error format", async () => {
  await Bun.write(join(server.dir, "plugins", "lines.ts"), example);
  const post = (body: unknown) => postJson(`${server.url}/lines`, body);
  const response = await waitFor(
    () => post({ model: "demo", say: "hi", max: 5 }),
    (r) => r.status !== 404,
  );
  expect(response.headers.get("content-type")).toStartWith("application/x-ndjson");
  const lines = (await response.text())
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines.at(-1)).toEqual({ done: "length", tokens: 5 });
  expect(lines.slice(0, -1).every((l) => typeof l.piece === "string")).toBe(true);
  const bad = await post({ model: "demo" });
  expect(bad.status).toBe(400);
  expect((await bodyOf(bad)).failed).toContain("say");
  const missing = await post({ model: "nope", say: "hi" });
  expect(missing.status).toBe(404);
  expect((await bodyOf(missing)).failed).toContain("nope");
});
