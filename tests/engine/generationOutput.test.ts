/** The text path after the detokenizer: stop strings, the trailing whitespace JSON grammars drop, and tokens attached to their text. */
import { describe, expect, test } from "bun:test";
import { GenerationOutput } from "../../src/engine/GenerationOutput.ts";
import type { GenerationSink } from "../../src/engine/StreamingGeneration.ts";
import type { GeneratedToken } from "../../src/engine/types.ts";

function recorder() {
  const events: { text: string; tokens?: number[] }[] = [];
  const sink: GenerationSink = {
    start() {},
    text: (text, tokens) => events.push(tokens ? { text, tokens: tokens.map((t) => t.id) } : { text }),
    signal: new AbortController().signal,
  };
  return { events, sink };
}

const token = (id: number, text: string): GeneratedToken => ({ id, text, bytes: [] });

describe("trailing whitespace (JSON grammars)", () => {
  test("whitespace is held until text follows it, and dropped at the end", () => {
    const { events, sink } = recorder();
    const output = new GenerationOutput(sink, { stops: [], trimTrailingWhitespace: true }, false);
    for (const piece of ['{"a"', ": ", "\n", "1}", "\n", "  "]) output.push(piece);
    output.end();
    expect(events.map((e) => e.text).join("")).toBe('{"a": \n1}');
    expect(events.map((e) => e.text)).toEqual(['{"a"', ":", " \n1}"]);
  });

  test("without the option, whitespace goes out at once", () => {
    const { events, sink } = recorder();
    const output = new GenerationOutput(sink, { stops: [], trimTrailingWhitespace: false }, false);
    for (const piece of ["{}", "\n"]) output.push(piece);
    output.end();
    expect(events.map((e) => e.text)).toEqual(["{}", "\n"]);
  });
});

describe("reported tokens", () => {
  test("one event per piece, each with the tokens whose text begins in it", () => {
    const { events, sink } = recorder();
    const output = new GenerationOutput(sink, { stops: [], trimTrailingWhitespace: false }, true);
    output.push(" once", [token(1, " once")]);
    output.push("", []);
    output.push("日", [token(2, ""), token(3, ""), token(4, "")]);
    output.end();
    expect(events).toEqual([
      { text: " once", tokens: [1] },
      { text: "日", tokens: [2, 3, 4] },
    ]);
  });

  test("a stop string: text before it goes out, tokens of the stop string do not", () => {
    const { events, sink } = recorder();
    const output = new GenerationOutput(sink, { stops: ["END"], trimTrailingWhitespace: false }, true);
    expect(output.push(" a", [token(1, " a")])).toBe(true);
    expect(output.push(" bE", [token(2, " bE")])).toBe(true); // "E" may begin the stop: held with its token
    expect(output.push("N", [token(3, "N")])).toBe(true);
    expect(output.push("D!", [token(4, "D!")])).toBe(false);
    output.end();
    expect(output.stopped).toBe("END");
    expect(events.map((e) => e.text).join("")).toBe(" a b");
    expect(events.flatMap((e) => e.tokens ?? [])).toEqual([1, 2]);
  });
});
