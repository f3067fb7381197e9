/** Stop strings are found in streamed text at character precision, across piece boundaries, without losing text. */
import { expect, test } from "bun:test";
import { StopStringFilter } from "../../src/engine/StopStringFilter.ts";

const run = (stops: string[], pieces: string[]) => {
  const filter = new StopStringFilter(stops);
  let out = "";
  for (const piece of pieces) {
    out += filter.push(piece);
    if (filter.stopped) return { out, stopped: filter.stopped };
  }
  return { out: out + filter.flush(), stopped: filter.stopped };
};

test("a stop inside one piece keeps the text before it", () => {
  expect(run(["big"], ["is a", " big", " dog"])).toEqual({ out: "is a ", stopped: "big" });
});

test("a stop split across pieces is held back, then cut", () => {
  expect(run(["\n\nUser:"], ["Hello", "\n", "\nUs", "er: hi"])).toEqual({ out: "Hello", stopped: "\n\nUser:" });
});

test("a partial match that does not complete is released", () => {
  expect(run(["STOP"], ["ST", "ART", " now"])).toEqual({ out: "START now", stopped: undefined });
  expect(run(["abc"], ["xa", "b"])).toEqual({ out: "xab", stopped: undefined });
});

test("the earliest of several stops wins", () => {
  expect(run(["world", "lo"], ["hello world"])).toEqual({ out: "hel", stopped: "lo" });
});
