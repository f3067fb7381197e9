// Checks that synthetic GGUF files are well-formed, deterministic, loadable by llama.cpp and cached correctly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Llama } from "node-llama-cpp";
import { defaultCacheDir } from "../../src/config/environment.ts";
import { ensureSyntheticModel, syntheticModelPath, syntheticPresets } from "../../src/gguf/syntheticModels.ts";
import {
  cycleTokens,
  float32ToFloat16Bits,
  writeLlamaGguf,
  type GgufTensorType,
  type SyntheticLlamaSpec,
} from "../../src/gguf/writeLlamaGguf.ts";

const ggmlType: Record<GgufTensorType, number> = { F32: 0, F16: 1, Q8_0: 8 };
const fileType: Record<GgufTensorType, number> = { F32: 0, F16: 1, Q8_0: 7 };
const presetFor: Record<GgufTensorType, string> = { F32: "tiny-f32", F16: "tiny-f16", Q8_0: "demo" };
const tensorTypes: GgufTensorType[] = ["F32", "F16", "Q8_0"];

let dir = "";
let llama: Llama;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "llamaport-gguf-test-"));
  const { getLlama, LlamaLogLevel } = await import("node-llama-cpp");
  // One instance for the whole file: creating a Llama binding is the slowest step by far.
  llama = await getLlama({ build: "never", gpu: false, maxThreads: 1, logLevel: LlamaLogLevel.error });
});

afterAll(async () => {
  await llama?.dispose();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function sha256(path: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(path))
    .digest("hex");
}

describe("float32ToFloat16Bits", () => {
  test("matches the platform's round-to-nearest-even half conversion", () => {
    const half = new Float16Array(1);
    const bits = new Uint16Array(half.buffer);
    const special = [0, -0, 1, -1, 0.02, 65504, 65519, 65520, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9];
    const halfway = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 2 ** -14 * (1 - 2 ** -11)];
    const values = [...special, ...halfway, Infinity, -Infinity].map(Math.fround);
    let s = 12345;
    for (let i = 0; i < 20000; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      // Inputs must already be float32: rounding a float64 straight to half can differ by one ulp.
      values.push(Math.fround((s / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 28)));
    }
    for (const v of values) {
      half[0] = v;
      expect({ v, bits: float32ToFloat16Bits(v) }).toEqual({ v, bits: bits[0]! });
    }
    expect(float32ToFloat16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16Bits(NaN) & 0x3ff).not.toBe(0);
  });
});

describe.each(tensorTypes)("%s model", (type) => {
  const spec = syntheticPresets[presetFor[type]]!;
  const path = () => join(dir, `tiny-${type}.gguf`);

  beforeAll(async () => {
    expect(spec.tensorType).toBe(type);
    await writeLlamaGguf(path(), spec);
  });

  test("metadata and tensor table read back", async () => {
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(path(), { logWarnings: false });
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    expect(info.version).toBe(3);
    expect(md.general).toMatchObject({ architecture: "llama", name: spec.name, alignment: 32, file_type: fileType[type] });
    expect(md.llama).toMatchObject({
      context_length: spec.contextLength,
      embedding_length: spec.embedding,
      block_count: spec.layers,
      feed_forward_length: spec.feedForward,
      vocab_size: spec.vocabSize,
      attention: { head_count: spec.heads, head_count_kv: spec.kvHeads },
      rope: { dimension_count: spec.embedding / spec.heads },
    });
    expect((md.llama!.attention as Record<string, number>).layer_norm_rms_epsilon).toBeCloseTo(1e-5, 10);
    const tok = (md.tokenizer as { ggml: Record<string, unknown>; chat_template?: unknown }).ggml;
    expect(md.tokenizer).not.toHaveProperty("chat_template");
    expect(tok).toMatchObject({
      model: "llama",
      bos_token_id: 1,
      eos_token_id: 2,
      unknown_token_id: 0,
      add_bos_token: true,
      add_eos_token: false,
    });
    const tokens = tok.tokens as string[];
    const types = tok.token_type as number[];
    const scores = tok.scores as number[];
    expect(tokens.length).toBe(spec.vocabSize);
    expect(types.length).toBe(spec.vocabSize);
    expect(scores.length).toBe(spec.vocabSize);
    expect(new Set(tokens).size).toBe(tokens.length);
    expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(tokens[258]).toBe("<0xFF>");
    expect(tokens[259]).toBe("\u2581");
    expect(types.slice(0, 3)).toEqual([2, 3, 3]);
    expect(types.slice(3, 259).every((t) => t === 6)).toBe(true);
    expect(types.slice(259).every((t) => t === 1)).toBe(true);
    expect(tokens).toContain("\u2581the");
    for (let i = 260; i < scores.length; i++) expect(scores[i]!).toBeLessThan(scores[i - 1]!);

    const tensors = info.tensorInfo!;
    expect(Number(info.tensorCount)).toBe(3 + 9 * spec.layers);
    expect(tensors.length).toBe(3 + 9 * spec.layers);
    const byName = new Map(tensors.map((t) => [t.name, t]));
    const headDim = spec.embedding / spec.heads;
    const expectDims = (name: string, dims: number[], t: number) => {
      const tensor = byName.get(name);
      expect(tensor, name).toBeDefined();
      expect({ name, dims: tensor!.dimensions.map(Number), type: tensor!.ggmlType }).toEqual({ name, dims, type: t });
    };
    expectDims("token_embd.weight", [spec.embedding, spec.vocabSize], ggmlType[type]);
    expectDims("output_norm.weight", [spec.embedding], 0);
    expectDims("output.weight", [spec.embedding, spec.vocabSize], ggmlType[type]);
    for (let l = 0; l < spec.layers; l++) {
      expectDims(`blk.${l}.attn_norm.weight`, [spec.embedding], 0);
      expectDims(`blk.${l}.attn_q.weight`, [spec.embedding, spec.embedding], ggmlType[type]);
      expectDims(`blk.${l}.attn_k.weight`, [spec.embedding, spec.kvHeads * headDim], ggmlType[type]);
      expectDims(`blk.${l}.attn_v.weight`, [spec.embedding, spec.kvHeads * headDim], ggmlType[type]);
      expectDims(`blk.${l}.attn_output.weight`, [spec.embedding, spec.embedding], ggmlType[type]);
      expectDims(`blk.${l}.ffn_norm.weight`, [spec.embedding], 0);
      expectDims(`blk.${l}.ffn_gate.weight`, [spec.embedding, spec.feedForward], ggmlType[type]);
      expectDims(`blk.${l}.ffn_up.weight`, [spec.embedding, spec.feedForward], ggmlType[type]);
      expectDims(`blk.${l}.ffn_down.weight`, [spec.feedForward, spec.embedding], ggmlType[type]);
    }
    for (const t of tensors) expect(Number(t.fileOffset) % 32).toBe(0);

    // Norms must be exactly 1.0 and the data section must be complete.
    const bytes = await readFile(path());
    const norm = byName.get("output_norm.weight")!;
    const normValues = new DataView(bytes.buffer, bytes.byteOffset + Number(norm.fileOffset), spec.embedding * 4);
    for (let i = 0; i < spec.embedding; i++) expect(normValues.getFloat32(i * 4, true)).toBe(1);
    const last = tensors.reduce((a, b) => (Number(a.fileOffset) > Number(b.fileOffset) ? a : b));
    const lastBytes = { F32: 4, F16: 2, Q8_0: 34 / 32 }[type] * last.dimensions.map(Number).reduce((a, b) => a * b, 1);
    expect(bytes.length).toBe(Math.ceil((Number(last.fileOffset) + lastBytes) / 32) * 32);
  });

  test("loads in llama.cpp and generates words deterministically at temperature 0", async () => {
    const { LlamaCompletion } = await import("node-llama-cpp");
    const model = await llama.loadModel({ modelPath: path() });
    try {
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      try {
        const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
        const first = await completion.generateCompletion("Once upon a time", { maxTokens: 16, temperature: 0 });
        const second = await completion.generateCompletion("Once upon a time", { maxTokens: 16, temperature: 0 });
        expect(first.trim().length).toBeGreaterThan(0);
        expect(second).toBe(first);
        // The output layer only gives signal to whole English words and "." / ",".
        expect(first).toMatch(/^[A-Za-z.,\s]+$/);
      } finally {
        await context.dispose();
      }
    } finally {
      await model.dispose();
    }
  }, 30_000);
});

describe("tokenizer variants", () => {
  test("tiny-bpe: a GPT-2-style byte-level BPE vocabulary with merges that llama.cpp tokenizes and round-trips", async () => {
    const path = await ensureSyntheticModel("tiny-bpe", join(dir, "variants"));
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(path, { readTensorInfo: false, logWarnings: false });
    const tok = (info.metadata as unknown as { tokenizer: { ggml: Record<string, unknown> } }).tokenizer.ggml;
    expect(tok).toMatchObject({ model: "gpt2", pre: "gpt-2", bos_token_id: 999, eos_token_id: 999, add_bos_token: false });
    expect((tok.tokens as string[]).slice(32, 35)).toEqual(["\u0120", "!", '"']); // byte 0x20 is "Ġ"
    expect(tok.merges as string[]).toContain("\u0120t h");
    const model = await llama.loadModel({ modelPath: path });
    try {
      expect(model.vocabularyType as string).toBe("bpe");
      expect(model.getWarnings()).toEqual([]);
      const text = "the time, 日本 🎉";
      const tokens = model.tokenize(text, false);
      expect(tokens.length).toBeLessThan(new TextEncoder().encode(text).length); // merges were used
      expect(model.detokenize(tokens)).toBe(text);
      // The GPT-2 detokenizer cleans up spaces before punctuation.
      expect(model.detokenize(model.tokenize("the time .", false))).toBe("the time.");
    } finally {
      await model.dispose();
    }
  });

  test("tiny-fim: fill-in-the-middle tokens as the last three ids, found by llama.cpp", async () => {
    const path = await ensureSyntheticModel("tiny-fim", join(dir, "variants"));
    const model = await llama.loadModel({ modelPath: path });
    try {
      const size = syntheticPresets["tiny-fim"]!.vocabSize;
      expect(model.tokens.infill).toMatchObject({ prefix: size - 3, suffix: size - 2, middle: size - 1 });
      expect(model.detokenize([size - 3] as never, true)).toBe("<fim_prefix>");
      expect(model.isSpecialToken((size - 1) as never)).toBe(true);
    } finally {
      await model.dispose();
    }
  });

  test("tiny-cycle: after any prompt the model walks its cycle of 64 words, each followed by the next, forever", async () => {
    const spec = syntheticPresets["tiny-cycle"]!;
    const words = cycleTokens(spec);
    expect(words).toHaveLength(64);
    const model = await llama.loadModel({ modelPath: await ensureSyntheticModel("tiny-cycle", join(dir, "variants")) });
    const context = await model.createContext({ contextSize: 512, threads: 1 });
    try {
      for (const prompt of ["Story: the of and", "xyz 123 hello", "table table table"]) {
        const sequence = context.getSequence();
        const generated: number[] = [];
        for await (const token of sequence.evaluate(model.tokenize(prompt), { temperature: 0 })) if (generated.push(token) >= 150) break;
        const start = words.indexOf(generated[0]!);
        expect(start).toBeGreaterThanOrEqual(0);
        expect(generated).toEqual(generated.map((_, i) => words[(start + i) % words.length]!));
        sequence.dispose();
      }
    } finally {
      await context.dispose();
      await model.dispose();
    }
  });
});

describe("determinism", () => {
  const base = syntheticPresets.demo!;

  test("same spec gives identical bytes, different seed differs", async () => {
    const a = join(dir, "det-a.gguf");
    const b = join(dir, "det-b.gguf");
    const c = join(dir, "det-c.gguf");
    await Promise.all([writeLlamaGguf(a, base), writeLlamaGguf(b, base), writeLlamaGguf(c, { ...base, seed: base.seed + 1 })]);
    const [ha, hb, hc] = await Promise.all([sha256(a), sha256(b), sha256(c)]);
    expect(hb).toBe(ha);
    expect(hc).not.toBe(ha);
    expect((await stat(c)).size).toBe((await stat(a)).size);
    expect((await readdir(dir)).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  test("larger vocabularies fill up with unique generated pieces", async () => {
    const spec: SyntheticLlamaSpec = { ...base, name: "big-vocab", vocabSize: 5000, layers: 1 };
    const path = join(dir, "big-vocab.gguf");
    await writeLlamaGguf(path, spec);
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(path, { readTensorInfo: false, logWarnings: false });
    const tokens = (info.metadata as unknown as { tokenizer: { ggml: { tokens: string[] } } }).tokenizer.ggml.tokens;
    expect(tokens.length).toBe(5000);
    expect(new Set(tokens).size).toBe(5000);
  });

  test("rejects invalid specs without leaving files behind", async () => {
    const path = join(dir, "invalid.gguf");
    await expect(writeLlamaGguf(path, { ...base, embedding: 48, heads: 4 })).rejects.toThrow(/divisible by 32/);
    await expect(writeLlamaGguf(path, { ...base, heads: 3 })).rejects.toThrow(/divisible by heads/);
    await expect(writeLlamaGguf(path, { ...base, vocabSize: 100 })).rejects.toThrow(/vocabSize/);
    expect((await readdir(dir)).filter((f) => f.startsWith("invalid"))).toEqual([]);
  });
});

describe("ensureSyntheticModel", () => {
  test("writes once into the cache and reuses the file", async () => {
    const cacheDir = join(dir, "cache");
    const [first, concurrent] = await Promise.all([ensureSyntheticModel("demo", cacheDir), ensureSyntheticModel("demo", cacheDir)]);
    expect(concurrent).toBe(first);
    expect(first).toBe(syntheticModelPath("demo", cacheDir));
    expect(first).toMatch(new RegExp(`^${cacheDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/models/synthetic-demo-[0-9a-f]{12}\\.gguf$`));
    const before = await stat(first);
    await Bun.sleep(20);
    const again = await ensureSyntheticModel("demo", cacheDir);
    expect(again).toBe(first);
    const after = await stat(again);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
    expect(await readdir(join(cacheDir, "models"))).toEqual([first.split("/").pop()!]);
  });

  test("rejects an unknown preset", async () => {
    await expect(ensureSyntheticModel("nope", join(dir, "cache"))).rejects.toThrow(/^unknown synthetic model "nope"; known: demo, /);
  });

  test("cache dir honours LLAMAPORT_CACHE, then XDG_CACHE_HOME", () => {
    expect(defaultCacheDir({ LLAMAPORT_CACHE: "/x/llamaport-cache", XDG_CACHE_HOME: "/x/xdg" })).toBe("/x/llamaport-cache");
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/x/xdg" })).toBe("/x/xdg/llamaport");
    expect(defaultCacheDir({})).toMatch(/\/\.cache\/llamaport$/);
  });
});
