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

test("overlapping and repeated prefixes (the KMP fallback) are still found", () => {
  expect(run(["aab"], ["aaa", "ab"])).toEqual({ out: "aa", stopped: "aab" });
  expect(run(["abab"], ["aba", "bab"])).toEqual({ out: "", stopped: "abab" });
  expect(run(["abab"], ["xaba", "cabab"])).toEqual({ out: "xabac", stopped: "abab" });
  expect(run(["abcabd"], ["abcab", "cabd"])).toEqual({ out: "abc", stopped: "abcabd" });
  expect(run(["ab"], ["a", "a", "a", "b"])).toEqual({ out: "aa", stopped: "ab" });
});

test("within the text seen at once, the stop that starts first wins even if another ends first", () => {
  expect(run(["abcd", "bc"], ["xabcdy"])).toEqual({ out: "x", stopped: "abcd" });
  expect(run(["abcd", "bc"], ["xab", "cdy"])).toEqual({ out: "x", stopped: "abcd" });
  // Once a stop is complete, generation ends there: a longer one that might have started earlier is not waited for.
  expect(run(["abcd", "bc"], ["xabc", "dy"])).toEqual({ out: "xa", stopped: "bc" });
});

test("only the longest tail that can still become a stop is held back", () => {
  const filter = new StopStringFilter(["</answer>", "###"]);
  expect(filter.push("the end </ans")).toBe("the end ");
  expect(filter.push("wer is ##")).toBe("</answer is ");
  expect(filter.push("!")).toBe("##!");
});

test("a very long stop string costs time linear in its length, not quadratic", () => {
  // The first version built every prefix of every stop string up front: 200,000 characters meant 200,000 prefixes
  // (about 20 GB of strings) before the first token. Linear, this takes milliseconds.
  const long = "ab".repeat(100_000);
  const started = performance.now();
  const filter = new StopStringFilter([long, `${"a".repeat(199_999)}c`]);
  let out = "";
  for (let i = 0; i < 1_000; i++) out += filter.push("ab".repeat(100));
  expect(filter.stopped).toBe(long);
  expect(out).toBe("");
  expect(performance.now() - started).toBeLessThan(2_000);
});
