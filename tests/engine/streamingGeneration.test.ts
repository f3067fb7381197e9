/** StreamingGeneration with stand-in producers: event order, coalescing, errors, and a reader that leaves early stopping the producer. */
import { describe, expect, test } from "bun:test";
import { type GenerationSink, StreamingGeneration } from "../../src/engine/StreamingGeneration.ts";
import type { GenerationEvent, GenerationSummary } from "../../src/engine/types.ts";

const summary: GenerationSummary = {
  type: "done",
  model: "m",
  finishReason: "stop",
  promptTokens: 3,
  cachedTokens: 0,
  completionTokens: 2,
  sequence: 0,
  timings: { queueMs: 0, loadMs: 0, promptMs: 0, generateMs: 0, totalMs: 0 },
};

async function events(generation: StreamingGeneration): Promise<GenerationEvent[]> {
  const seen: GenerationEvent[] = [];
  for await (const event of generation) seen.push(event);
  return seen;
}

describe("StreamingGeneration", () => {
  test("start, then text, then the summary; the model name is known before reading", async () => {
    const generation = new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 3, cachedTokens: 1 });
      sink.text("Hel");
      await Bun.sleep(0);
      sink.text("lo");
      return summary;
    });
    expect(generation.model).toBe("m");
    const seen = await events(generation);
    expect(seen[0]).toEqual({ type: "start", promptTokens: 3, cachedTokens: 1 });
    expect(seen.at(-1)).toBe(summary);
    expect(
      seen
        .filter((e) => e.type === "text")
        .map((e) => (e.type === "text" ? e.text : ""))
        .join(""),
    ).toBe("Hello");
  });

  test("text that piles up while the reader is busy comes as one delta", async () => {
    const generation = new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 1, cachedTokens: 0 });
      for (const piece of ["a", "b", "c"]) sink.text(piece);
      return summary;
    });
    const texts = (await events(generation)).filter((e) => e.type === "text");
    expect(texts).toEqual([{ type: "text", text: "abc" }]);
  });

  test("nothing runs until the first read, and a generation is read once", async () => {
    let ran = false;
    const generation = new StreamingGeneration("m", async (sink) => {
      ran = true;
      sink.start({ promptTokens: 1, cachedTokens: 0 });
      return summary;
    });
    await Bun.sleep(0);
    expect(ran).toBe(false);
    expect((await generation.collect()).summary).toBe(summary);
    expect(ran).toBe(true);
    await expect(generation.collect()).rejects.toThrow("only be read once");
  });

  test("a producer's error reaches the reader after the text that came before it", async () => {
    const generation = new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 1, cachedTokens: 0 });
      sink.text("partial");
      throw new Error("decode failed");
    });
    const seen: GenerationEvent[] = [];
    const error = await (async () => {
      for await (const event of generation) seen.push(event);
    })().catch((e: Error) => e.message);
    expect(error).toBe("decode failed");
    expect(seen.map((e) => e.type)).toEqual(["start", "text"]);
  });

  test("a reader that stops early (a client gone) aborts the producer's signal, so decoding stops", async () => {
    let sink!: GenerationSink;
    let stopped!: () => void;
    const producerStopped = new Promise<void>((resolve) => (stopped = resolve));
    const generation = new StreamingGeneration("m", (s) => {
      sink = s;
      s.start({ promptTokens: 1, cachedTokens: 0 });
      s.text("first");
      return new Promise<GenerationSummary>((resolve) =>
        s.signal.addEventListener("abort", () => {
          stopped();
          resolve({ ...summary, finishReason: "abort" });
        }),
      );
    });
    for await (const event of generation) if (event.type === "text") break;
    await producerStopped;
    expect(sink.signal.aborted).toBe(true);
  });

  test("a reader that reads to the end does not abort", async () => {
    let sink!: GenerationSink;
    const generation = new StreamingGeneration("m", async (s) => {
      sink = s;
      s.start({ promptTokens: 1, cachedTokens: 0 });
      return summary;
    });
    await events(generation);
    expect(sink.signal.aborted).toBe(false);
  });

  test("tool-call events keep their order after the text before them; argument pieces that pile up come as one", async () => {
    const call = { id: "call_1", name: "f", arguments: { a: 1 } };
    const generation = new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 1, cachedTokens: 0 });
      sink.text("Let me ");
      sink.text("check.");
      sink.toolCallStart(0, "call_1", "f");
      for (const piece of ['{"a"', ": ", "1}"]) sink.toolCallArguments(0, piece);
      sink.toolCallEnd(0, call, '{"a": 1}');
      return { ...summary, finishReason: "toolCalls" };
    });
    const seen = (await events(generation)).slice(1, -1);
    expect(seen).toEqual([
      { type: "text", text: "Let me check." },
      { type: "toolCallStart", index: 0, id: "call_1", name: "f" },
      { type: "toolCallArguments", index: 0, text: '{"a": 1}' },
      { type: "toolCallEnd", index: 0, call, argumentsJson: '{"a": 1}' },
    ]);
  });

  test("collect() returns the text and the completed calls", async () => {
    const call = { id: "call_2", name: "g", arguments: {} };
    const generation = new StreamingGeneration("m", async (sink) => {
      sink.start({ promptTokens: 1, cachedTokens: 0 });
      sink.text("x");
      sink.toolCallStart(0, "call_2", "g");
      sink.toolCallArguments(0, "{}");
      sink.toolCallEnd(0, call, "{}");
      // A second call cut short: started, never ended, so not in the result.
      sink.toolCallStart(1, "call_3", "g");
      sink.toolCallArguments(1, '{"x');
      return { ...summary, finishReason: "length" };
    });
    const { text, toolCalls } = await generation.collect();
    expect(text).toBe("x");
    expect(toolCalls).toEqual([call]);
  });
});
