/** The host's stream framing: SSE and NDJSON items, line breaks in SSE data, and the first item before the status. */
import { expect, test } from "bun:test";
import { LlamaportError } from "../../src/engine/EngineError.ts";
import { NOW, TEXT, template } from "../../src/pluginApi/frames.ts";
import { ndjson, sse, sseEvent } from "../../src/pluginApi/streams.ts";
import { streamResponse } from "../../src/server/streamResponse.ts";

const log = { info() {}, warn() {}, error() {} };
const hooks = {
  log,
  streamError: (problem: { message: string }) => ({ failed: problem.message }),
  errorResponse: (problem: { status: number; message: string }) => Response.json({ early: problem.message }, { status: problem.status }),
};

async function* items(...values: unknown[]) {
  for (const value of values) yield value;
}

test("SSE: a data string with line breaks goes out as several data: lines; objects as JSON; named events", async () => {
  const response = await streamResponse(sse(items("one\ntwo\r\nthree", { a: 1 }, sseEvent("done", "[DONE]"))), hooks);
  expect(response.headers.get("content-type")).toBe("text/event-stream");
  expect(await response.text()).toBe('data: one\ndata: two\ndata: three\n\ndata: {"a":1}\n\nevent: done\ndata: [DONE]\n\n');
});

test("NDJSON: one line per item, strings as already-serialised lines", async () => {
  const response = await streamResponse(ndjson(items('{"x":1}', { y: 2 })), hooks);
  expect(response.headers.get("content-type")).toBe("application/x-ndjson");
  expect(await response.text()).toBe('{"x":1}\n{"y":2}\n');
});

test("an error before the first item is an ordinary error response; after it, the protocol's last item", async () => {
  const early = await streamResponse(
    sse(
      (async function* () {
        yield* [];
        throw new LlamaportError("not_found", "no such model");
      })(),
    ),
    hooks,
  );
  expect(early.status).toBe(404);
  expect(await early.json()).toEqual({ early: "no such model" });
  const late = await streamResponse(
    ndjson(
      (async function* () {
        yield { ok: 1 };
        throw new LlamaportError("unavailable", "crashed");
      })(),
    ),
    hooks,
  );
  expect(late.status).toBe(200);
  expect(await late.text()).toBe('{"ok":1}\n{"failed":"crashed"}\n');
});

test("chunk templates: TEXT is JSON-escaped in place, NOW is an ISO time, events carry their name", () => {
  const chunk = template({ choices: [{ delta: { content: TEXT } }], at: NOW });
  const rendered = JSON.parse(chunk.render('say "hi"\n') as string);
  expect(rendered.choices[0].delta.content).toBe('say "hi"\n');
  expect(Date.parse(rendered.at)).toBeGreaterThan(Date.now() - 60_000);
  const named = template({ delta: TEXT }, { event: "content_block_delta" }).render("x");
  expect(named).toMatchObject({ event: "content_block_delta", data: '{"delta":"x"}' });
  expect(() => template({ nothing: 1 })).toThrow("TEXT placeholder");
});
