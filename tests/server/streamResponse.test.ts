/** The host's stream framing: SSE and NDJSON items, line breaks in SSE data, the first item before the status, chunk templates and slots, several choices. */
import { expect, test } from "bun:test";
import { LlamaportError } from "../../src/engine/EngineError.ts";
import type { Generation, GenerationEvent, GenerationSummary, TextDelta } from "../../src/engine/types.ts";
import { choiceFrames, frames, NOW, type StreamFormat, slot, TEXT, template } from "../../src/pluginApi/frames.ts";
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

test("chunk slots: filled from each text event, serialised in place, the rest of the template stays fixed", () => {
  let calls = 0;
  const chunk = template({
    delta: TEXT,
    ids: slot((delta) => {
      calls++;
      return delta.tokens?.map((t) => t.id) ?? null;
    }),
    fixed: { a: [1, 2] },
  });
  const event: TextDelta = {
    type: "text",
    text: "ab",
    tokens: [
      { id: 7, text: "a", bytes: [97] },
      { id: 8, text: "b", bytes: [98] },
    ],
  };
  expect(JSON.parse(chunk.render(event) as string)).toEqual({ delta: "ab", ids: [7, 8], fixed: { a: [1, 2] } });
  expect(JSON.parse(chunk.render("x") as string)).toEqual({ delta: "x", ids: null, fixed: { a: [1, 2] } });
  expect(calls).toBe(2);
});

test("choiceFrames interleaves several generations, frames each with its own format, and ends once all are done", async () => {
  const generation = (name: string, pieces: string[], delayMs: number): Generation => ({
    model: "m",
    collect: () => Promise.reject(new Error("unused")),
    async *[Symbol.asyncIterator]() {
      yield { type: "start", promptTokens: 1, cachedTokens: 0 };
      for (const text of pieces) {
        await Bun.sleep(delayMs);
        yield { type: "text", text };
      }
      yield {
        type: "done",
        model: name,
        finishReason: "stop",
        promptTokens: 1,
        cachedTokens: 0,
        completionTokens: pieces.length,
        timings,
      } as never;
    },
  });
  const timings = { queueMs: 0, loadMs: 0, promptMs: 0, generateMs: 0, totalMs: 0 };
  const items: unknown[] = [];
  for await (const item of choiceFrames(
    [generation("a", ["1", "2", "3"], 5), generation("b", ["x"], 1)],
    (index) => ({
      start: () => [`start ${index}`],
      text: template({ index, text: TEXT }),
      done: (summary) => [`done ${index} ${summary.completionTokens}`],
    }),
    (summaries) => [`end ${summaries.map((s) => s.model).join(",")}`],
  ))
    items.push(typeof item === "string" && item.startsWith("{") ? JSON.parse(item) : item);
  expect(items.filter((i) => typeof i === "object")).toContainEqual({ index: 1, text: "x" });
  expect(
    items.filter((i) => typeof i === "object" && (i as { index: number }).index === 0).map((i) => (i as { text: string }).text),
  ).toEqual(["1", "2", "3"]);
  expect(items).toContain("done 0 3");
  expect(items).toContain("done 1 1");
  expect(items.at(-1)).toBe("end a,b");
  // b finished while a was still generating: the streams were interleaved, not one after the other.
  expect(items.indexOf("done 1 1")).toBeLessThan(items.indexOf("done 0 3"));
});

const summary: GenerationSummary = {
  type: "done",
  model: "m",
  finishReason: "toolCalls",
  promptTokens: 1,
  cachedTokens: 0,
  completionTokens: 3,
  sequence: 0,
  timings: { queueMs: 0, loadMs: 0, promptMs: 0, generateMs: 0, totalMs: 0 },
};

/** A stand-in generation that yields the given events, then the summary. */
function generationOf(events: GenerationEvent[]): Generation {
  return {
    model: "m",
    async *[Symbol.asyncIterator]() {
      yield { type: "start", promptTokens: 1, cachedTokens: 0 };
      yield* events;
      yield summary;
    },
    collect: () => Promise.reject(new Error("not used")),
  };
}

const callEvents: GenerationEvent[] = [
  { type: "text", text: "Hi " },
  { type: "text", text: "there" },
  { type: "toolCallStart", index: 0, id: "c0", name: "f" },
  { type: "toolCallArguments", index: 0, text: '{"a":' },
  { type: "toolCallArguments", index: 0, text: "1}" },
  { type: "toolCallEnd", index: 0, call: { id: "c0", name: "f", arguments: { a: 1 } }, argumentsJson: '{"a":1}' },
  { type: "toolCallStart", index: 1, id: "c1", name: "g" },
  { type: "toolCallArguments", index: 1, text: "{}" },
  { type: "toolCallEnd", index: 1, call: { id: "c1", name: "g", arguments: {} }, argumentsJson: "{}" },
];

test("frames: text runs are opened and closed (with their whole text), each call gets its own argument template", async () => {
  const madeFor: string[] = [];
  const format: StreamFormat = {
    start: () => ["start"],
    textStart: () => ["text-start"],
    text: template({ t: TEXT }),
    textEnd: (text) => [`text-end ${text}`],
    toolCallStart: (call) => [`call ${call.index} ${call.id} ${call.name}`],
    toolCallArguments: (call) => {
      madeFor.push(call.id);
      return template({ call: call.index, args: TEXT });
    },
    toolCallEnd: (end) => [`end ${end.index} ${end.argumentsJson} ${JSON.stringify(end.call.arguments)}`],
    done: (s) => [`done ${s.finishReason}`],
  };
  const items: unknown[] = [];
  for await (const item of frames(generationOf(callEvents), format)) items.push(item);
  expect(items).toEqual([
    "start",
    "text-start",
    '{"t":"Hi "}',
    '{"t":"there"}',
    "text-end Hi there",
    "call 0 c0 f",
    '{"call":0,"args":"{\\"a\\":"}',
    '{"call":0,"args":"1}"}',
    'end 0 {"a":1} {"a":1}',
    "call 1 c1 g",
    '{"call":1,"args":"{}"}',
    "end 1 {} {}",
    "done toolCalls",
  ]);
  expect(madeFor).toEqual(["c0", "c1"]);
});

test("frames: a format without tool-call hooks fails loudly when the model calls a tool", async () => {
  const run = async () => {
    for await (const _ of frames(generationOf(callEvents), { text: template({ t: TEXT }), done: () => [] }));
  };
  await expect(run()).rejects.toThrow("no toolCallStart / toolCallEnd hooks");
});
