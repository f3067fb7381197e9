/** takeTurns: a request's generations run at most `size` at once, in order, and none starts once the request is gone. */
import { expect, test } from "bun:test";
import type { Generation } from "../../src/engine/types.ts";
import { takeTurns } from "../../src/pluginApi/takeTurns.ts";

/** Fake generations that record how many run at once and finish when released. */
function fakes(count: number) {
  const state = { running: 0, most: 0, started: [] as number[], release: [] as (() => void)[] };
  const generations = Array.from({ length: count }, (_, index): Generation => {
    const run = async () => {
      state.started.push(index);
      state.running++;
      state.most = Math.max(state.most, state.running);
      await new Promise<void>((resolve) => state.release.push(resolve));
      state.running--;
      return { text: `#${index}`, toolCalls: [], summary: {} as never };
    };
    return {
      model: "m",
      async *[Symbol.asyncIterator]() {
        const { text } = await run();
        yield { type: "text", text } as never;
      },
      collect: run,
    };
  });
  return { state, generations };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("at most size at once, started in order, every one collected", async () => {
  const { state, generations } = fakes(5);
  const results = Promise.all(takeTurns(generations, 2, new AbortController().signal).map((g) => g.collect()));
  for (let released = 0; released < 5; released++) {
    await settle();
    state.release.shift()!();
  }
  expect((await results).map((r) => r.text)).toEqual(["#0", "#1", "#2", "#3", "#4"]);
  expect(state.most).toBe(2);
  expect(state.started).toEqual([0, 1, 2, 3, 4]);
});

test("iterated too; as many as size are returned unchanged", async () => {
  const { state, generations } = fakes(2);
  expect(takeTurns(generations, 2, new AbortController().signal)).toBe(generations);
  const three = fakes(3);
  const texts = Promise.all(
    takeTurns(three.generations, 1, new AbortController().signal).map(async (g) => {
      for await (const event of g) return (event as { text: string }).text;
    }),
  );
  for (let released = 0; released < 3; released++) {
    await settle();
    three.state.release.shift()!();
  }
  expect(await texts).toEqual(["#0", "#1", "#2"]);
  expect(three.state.most).toBe(1);
  expect(state.started).toEqual([]);
});

test("once the request is aborted, the waiting ones fail without starting", async () => {
  const { state, generations } = fakes(3);
  const controller = new AbortController();
  const results = takeTurns(generations, 1, controller.signal).map((g) =>
    g.collect().then(
      (r) => r.text,
      (e: Error) => e.message,
    ),
  );
  await settle();
  controller.abort();
  state.release.shift()!();
  expect(await Promise.all(results)).toEqual(["#0", "request aborted before its turn", "request aborted before its turn"]);
  expect(state.started).toEqual([0]);
});
