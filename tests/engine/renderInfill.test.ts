/**
 * Fill-in-the-middle prompt layouts with a stand-in model (one token per character): llama-server's repo-level layout
 * when the vocabulary has repo and file-separator tokens, the snippet layout otherwise, and trimming to the context.
 * The real model and endpoint are tested in tests/server/llamacppInfill.test.ts.
 */
import { expect, test } from "bun:test";
import type { LoadedModel } from "../../src/engine/LoadedModel.ts";
import { renderInfill } from "../../src/engine/renderInfill.ts";
import { type PromptBudget, promptTokenLimit } from "../../src/engine/renderPrompt.ts";
import type { InfillFile } from "../../src/engine/types.ts";

const [BOS, PRE, SUF, MID, REP, SEP] = [1, 100, 101, 102, 200, 201];
const chars = (text: string) => [...text].map((c) => c.charCodeAt(0));
/** The length of every text the stand-in tokenizer was given. */
let tokenized: number[] = [];
/** A budget of a window's prompt tokens, tokenizing as the stand-in model does. */
const budgetFor = (window: number) =>
  ({
    tokenizer: {
      text: async (_: LoadedModel, text: string) => {
        tokenized.push(text.length);
        return chars(text);
      },
    },
    limit: promptTokenLimit(window),
  }) as unknown as PromptBudget;
/** The prompt's tokens as plain numbers; `window`: the request's (default: the model's context). */
const layout = async (model: LoadedModel, prefix: string, suffix: string, files: InfillFile[] = [], window = model.contextSize) =>
  (await renderInfill(model, prefix, suffix, files, budgetFor(window))).tokens as number[];

/** A stand-in model with one token per character (`maxTokenChars` 1, unless said). */
function fakeModel(contextSize: number, fileTokens: { repo?: number; separator?: number }, maxTokenChars = 1): LoadedModel {
  return {
    entry: { name: "m" },
    contextSize,
    maxTokenChars,
    fileTokens,
    model: { tokens: { infill: { prefix: PRE, suffix: SUF, middle: MID }, shouldPrependBosToken: true, bos: BOS } },
  } as unknown as LoadedModel;
}

const files = [
  { name: "a.py", text: "x=1" },
  { text: "y" }, // no name: llama-server's "tmp"
];

test("with repo and separator tokens: REP myproject, each file after SEP and its name, SEP filename, then PRE..SUF..MID", async () => {
  const tokens = await layout(fakeModel(1000, { repo: REP, separator: SEP }), "def f(", "):", files);
  expect(tokens).toEqual([
    BOS,
    REP,
    ...chars("myproject\n"),
    SEP,
    ...chars("a.py\n"),
    ...chars("x=1"),
    SEP,
    ...chars("tmp\n"),
    ...chars("y"),
    SEP,
    ...chars("filename\n"),
    PRE,
    ...chars("def f("),
    SUF,
    ...chars("):"),
    MID,
  ]);
});

test("without them: each file after a snippet line; no files, no context", async () => {
  const model = fakeModel(1000, {});
  const snippet = chars("\n\n--- snippet ---\n\n");
  expect(await layout(model, "ab", "cd", files)).toEqual([
    BOS,
    ...snippet,
    ...chars("x=1"),
    ...snippet,
    ...chars("y"),
    PRE,
    ...chars("ab"),
    SUF,
    ...chars("cd"),
    MID,
  ]);
  expect(await layout(model, "ab", "cd")).toEqual([BOS, PRE, ...chars("ab"), SUF, ...chars("cd"), MID]);
});

test("too long for the context: the suffix keeps its start (a quarter at most), the prefix its end, files what is left", async () => {
  // 50 tokens of context: 45 for the prompt, 41 after PRE, SUF, MID and BOS.
  const model = fakeModel(50, {});
  const prefix = "p".repeat(30) + "P".repeat(30);
  const suffix = "S".repeat(10) + "s".repeat(30);
  const tokens = await layout(model, prefix, suffix, [{ text: "f".repeat(100) }]);
  expect(tokens).toEqual([BOS, PRE, ...chars(`${"p".repeat(1)}${"P".repeat(30)}`), SUF, ...chars("S".repeat(10)), MID]);
  expect(tokens.length).toBe(45);
  // A request's smaller window (its contextSize) trims the same way on a model with a larger context.
  expect(await layout(fakeModel(1000, {}), prefix, suffix, [{ text: "f".repeat(100) }], 50)).toEqual(tokens);
  // With room to spare, the files keep their end (the newest text): 41 - 4 = 37 of their 69 tokens.
  const file = "0123456789".repeat(5);
  const roomy = await layout(model, "ab", "cd", [{ text: file }]);
  expect(roomy).toEqual([BOS, ...chars(file.slice(-37)), PRE, ...chars("ab"), SUF, ...chars("cd"), MID]);
});

test("huge texts are cut to what the kept tokens can cover before they are tokenized, keeping the same tokens", async () => {
  const prefix = "p".repeat(500_000) + "P".repeat(100);
  const suffix = "S".repeat(100) + "s".repeat(500_000);
  // Texts that differ along their length, so a cut at the wrong end shows.
  const cycle = (length: number, from: number) => Array.from({ length }, (_, i) => String.fromCharCode(from + (i % 26))).join("");
  const files = [{ name: "old.py", text: cycle(500_000, 97) }, { text: cycle(300_000, 65) }];
  // A longest token of 4 characters: what 41 prompt tokens can cover, with 64 tokens of margin, is (41 + 64) * 4.
  tokenized = [];
  const cut = await layout(fakeModel(50, { repo: REP, separator: SEP }, 4), prefix, suffix, files);
  expect(Math.max(...tokenized)).toBeLessThanOrEqual((41 + 64) * 4);
  // The same prompt as when every text is tokenized whole (a longest token that covers everything).
  tokenized = [];
  expect(await layout(fakeModel(50, { repo: REP, separator: SEP }, 1e9), prefix, suffix, files)).toEqual(cut);
  expect(Math.max(...tokenized)).toBe(500_100);
  expect(cut.length).toBe(45);
  // With room for some of the files, they are cut at their start: the newest text is what stays.
  const roomy = await layout(fakeModel(400, { repo: REP, separator: SEP }, 4), "ab", "cd", files);
  const whole = await layout(fakeModel(400, { repo: REP, separator: SEP }, 1e9), "ab", "cd", files);
  expect(roomy).toEqual(whole);
  expect(roomy.slice(-15)).toEqual([...chars("filename\n"), PRE, ...chars("ab"), SUF, ...chars("cd"), MID].slice(-15));
});
