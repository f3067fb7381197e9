/**
 * Property test of the streaming detokenizer on real vocabularies: SentencePiece with byte fallback (the writer's and
 * the shared models), GPT-2-style BPE with space clean-up (the writer's), multi-byte UTF-8 split across tokens. The
 * pieces must join up to detokenizing the whole output at once after the prompt, and never hold half a character.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { LlamaModel, Token } from "node-llama-cpp";
import { getLlamaRuntime } from "../../src/engine/nodeLlamaCpp.ts";
import { StreamingDetokenizer } from "../../src/engine/StreamingDetokenizer.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { hasSharedModels, noteSharedModels, randomLlama2Model, storiesModel, testCacheDir } from "../support/testServer.ts";

noteSharedModels("tests/engine/streamingDetokenizer.test.ts");

const models = new Map<string, LlamaModel>();
beforeAll(async () => {
  const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
  const paths: Record<string, string> = {
    "writer SPM (demo)": await ensureSyntheticModel("demo", testCacheDir),
    "writer BPE (tiny-bpe)": await ensureSyntheticModel("tiny-bpe", testCacheDir),
    ...(hasSharedModels ? { stories260K: storiesModel, "llama-2-tiny-random": randomLlama2Model } : {}),
  };
  for (const [name, path] of Object.entries(paths)) models.set(name, await llama.loadModel({ modelPath: path }));
});
afterAll(async () => {
  for (const model of models.values()) await model.dispose();
});

/** A small deterministic PRNG (xorshift32), so failures reproduce. */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Pieces chosen to hit SentencePiece spaces, BPE space clean-up (" .", " 's", " ' ") and multi-byte characters. */
const fragments = [
  "Once",
  " upon",
  " a",
  " time",
  ",",
  ".",
  " .",
  " ,",
  " !",
  " ?",
  " 's",
  " 're",
  " 've",
  " 't",
  " ' ",
  "'",
  " ",
  "  ",
  "\n",
  "\n\n",
  "é",
  "ü",
  "ñ",
  "—",
  "日本",
  "語",
  "🎉",
  "👍🏽",
  "the",
  " dog",
  "x",
  "42",
  " (",
  ")",
  "<",
  "Ω",
];

function randomText(next: () => number): string {
  let text = "";
  const count = 1 + Math.floor(next() * 14);
  for (let i = 0; i < count; i++) text += fragments[Math.floor(next() * fragments.length)];
  return text;
}

/** Streams `generated` after `prompt` and checks the pieces against detokenizing it all at once. */
function checkStream(model: LlamaModel, prompt: Token[], generated: Token[]): void {
  const detokenizer = new StreamingDetokenizer(model, prompt);
  const pieces: string[] = [];
  let released = 0;
  for (const token of generated) {
    pieces.push(detokenizer.push(token));
    released += detokenizer.released;
  }
  pieces.push(detokenizer.flush());
  released += detokenizer.released;
  const promptText = model.detokenize(prompt, false);
  const expected = model.detokenize([...prompt, ...generated], false).slice(promptText.length);
  const context = { prompt: promptText, generated: generated.map((t) => model.detokenize([t], false)), pieces };
  expect({ ...context, text: pieces.join("") }).toEqual({ ...context, text: expected });
  expect(released).toBe(generated.length);
  if (!expected.includes("\ufffd"))
    for (const piece of pieces) expect({ piece, pieces }).toEqual({ piece: piece.replace("\ufffd", "?"), pieces });
  // Never half a UTF-16 pair either (an emoji split across pieces).
  for (const piece of pieces) expect(/[\ud800-\udbff]$|^[\udc00-\udfff]/.test(piece)).toBe(false);
}

function promptOf(model: LlamaModel, text: string): Token[] {
  const tokens = model.tokenize(text, false);
  const bos = model.tokens.bos;
  return model.tokens.shouldPrependBosToken && bos != null ? [bos, ...tokens] : tokens;
}

describe.each([...(hasSharedModels ? ["stories260K", "llama-2-tiny-random"] : []), "writer SPM (demo)", "writer BPE (tiny-bpe)"])(
  "%s",
  (name) => {
    test("random texts with multi-byte characters, spaces and punctuation stream exactly", () => {
      const model = models.get(name)!;
      const next = random(7);
      for (let i = 0; i < 150; i++) {
        const prompt = promptOf(model, randomText(next));
        checkStream(model, prompt, model.tokenize(randomText(next), false));
      }
    });

    test("the first token keeps its leading space", () => {
      const model = models.get(name)!;
      const prompt = promptOf(model, "Once upon a");
      // A word token with its leading space (SentencePiece "▁time", BPE "Ġtime"): detokenized alone, llama.cpp drops it.
      const last = prompt.at(-1)!;
      const pieceOf = (t: Token) => model.detokenize([last, t], false).slice(model.detokenize([last], false).length);
      const word = [...model.iterateAllTokens()].find((t) => /^ \w\w/.test(pieceOf(t)))!;
      const piece = pieceOf(word);
      // The bug this guards against: SentencePiece strips the space of the first token of every detokenize call.
      if (model.vocabularyType === "spm") expect(model.detokenize([word], false)).toBe(piece.slice(1));
      expect(piece).toStartWith(" ");
      expect(new StreamingDetokenizer(model, prompt).push(word)).toBe(piece);
    });

    test("random sequences of vocabulary tokens stream exactly", () => {
      const model = models.get(name)!;
      const size = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
      const next = random(11);
      // Tokens whose own text is complete UTF-8: random byte tokens would mostly make invalid UTF-8.
      const whole: Token[] = [];
      for (let id = 0; id < size && whole.length < 4000; id++) {
        const text = model.detokenize([id as Token], false);
        if (text !== "" && !text.includes("\ufffd")) whole.push(id as Token);
      }
      for (let i = 0; i < 100; i++) {
        const pick = () => whole[Math.floor(next() * whole.length)]!;
        const prompt = promptOf(model, randomText(next));
        checkStream(model, prompt, Array.from({ length: 1 + Math.floor(next() * 20) }, pick));
      }
    });

    test("what the model generates streams exactly", async () => {
      const model = models.get(name)!;
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      try {
        const sequence = context.getSequence();
        for (const text of ["Once upon a time", "The dog", "日本 and 🎉", "It's"]) {
          await sequence.clearHistory();
          const prompt = promptOf(model, text);
          const generated: Token[] = [];
          for await (const token of sequence.evaluate(prompt, { temperature: 0.9, seed: 3, topK: 0, topP: 1, minP: 0 })) {
            generated.push(token);
            if (generated.length >= 40) break;
          }
          checkStream(model, prompt, generated);
        }
      } finally {
        await context.dispose();
      }
    });
  },
);

test("a character split over byte tokens comes out whole, with the token that completes it", () => {
  const model = models.get("writer SPM (demo)")!;
  // The writer's vocabulary has no 日 or 🎉: they are spelled in <0xNN> byte tokens.
  const generated = model.tokenize("日🎉", false);
  expect(generated.length).toBeGreaterThan(6);
  const detokenizer = new StreamingDetokenizer(model, promptOf(model, "Say"));
  const pieces = generated.map((token) => [detokenizer.push(token), detokenizer.released] as const);
  const sent = pieces.filter(([text]) => text !== "");
  expect(sent.map(([text]) => text)).toEqual([" ", "日", "🎉"]);
  // The tokens of each character are completed together: 3 for 日, 4 for 🎉.
  expect(sent.map(([, released]) => released)).toEqual([1, 3, 4]);
});
