/** The byte scan that refuses too deep or too large JSON before it is parsed: strings and escapes must not fool it. */
import { expect, test } from "bun:test";
import { jsonShape, maxJsonDepth, maxJsonValues, readJsonBody } from "../../src/server/readJsonBody.ts";

const shape = (text: string) => jsonShape(new TextEncoder().encode(text), 1_000, 1_000_000);

test("brackets, commas and escaped quotes inside strings do not count", () => {
  expect(shape('{"a":"[[[\\"[[,,","b":[[1]]}')).toEqual({ depth: 3, values: 2 });
  expect(shape(JSON.stringify(["\\\\", [[]]]))).toEqual({ depth: 3, values: 2 });
  // Long strings are searched natively; an escaped quote far into one, then backslash runs before the real end.
  expect(shape(JSON.stringify({ a: `${"x".repeat(100)}"[[[,${"y".repeat(40)}\\`, b: [[[]]] }))).toEqual({ depth: 4, values: 2 });
  expect(shape(JSON.stringify([`${"q".repeat(50)}\\"`, [[]]]))).toEqual({ depth: 3, values: 2 });
  expect(shape(JSON.stringify({ "key,[": "v", "k\\": ["a,b", "c]"] }))).toEqual({ depth: 2, values: 3 });
});

test("the scan stops at the first limit passed", () => {
  expect(jsonShape(new TextEncoder().encode("[".repeat(1_000_000)), 64, 10).depth).toBe(65);
  expect(jsonShape(new TextEncoder().encode(`[${"1,".repeat(1_000_000)}1]`), 64, 10).values).toBe(11);
});

const request = (body: string) => new Request("http://x/", { method: "POST", body });

test("readJsonBody refuses too deep and too many values with a 400, and takes what is at the limits", async () => {
  const deep = `${"[".repeat(maxJsonDepth + 1)}${"]".repeat(maxJsonDepth + 1)}`;
  expect(await readJsonBody(request(deep), 1e9).catch((e) => e.message)).toBe(
    `request body is nested more than ${maxJsonDepth} levels deep`,
  );
  expect(await readJsonBody(request(`${"[".repeat(maxJsonDepth)}${"]".repeat(maxJsonDepth)}`), 1e9)).toBeArray();
  const many = JSON.stringify(Array(maxJsonValues + 1).fill(0));
  expect(await readJsonBody(request(many), 1e9).catch((e) => e.message)).toContain(`more than ${maxJsonValues} array items`);
  expect(await readJsonBody(request(JSON.stringify(Array(maxJsonValues).fill(0))), 1e9)).toHaveLength(maxJsonValues);
});
