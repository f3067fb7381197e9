// Writes deterministic, pseudo-random llama-architecture GGUF files so tests and benchmarks need no downloaded model.
import { mkdir, open, rename, rm } from "node:fs/promises";
import { endianness } from "node:os";
import { dirname } from "node:path";

export type GgufTensorType = "F32" | "F16" | "Q8_0";

export interface SyntheticLlamaSpec {
  name: string;
  seed: number;
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  contextLength: number;
  vocabSize: number;
  tensorType: GgufTensorType;
  /**
   * `"spm"` (default): a SentencePiece vocabulary with byte fallback, as llama and mistral have. `"bpe"`: a GPT-2-style
   * byte-level BPE vocabulary with merges (as GPT-2, Qwen, Llama 3 have), whose detokenizer cleans up spaces.
   */
  tokenizer?: "spm" | "bpe";
  /** Add fill-in-the-middle tokens (`<fim_prefix>`, `<fim_suffix>`, `<fim_middle>`) as the last three ids. */
  fim?: boolean;
  /**
   * A model that repeats a fixed cycle of this many English words, whatever came before: every block's attention and
   * feed-forward outputs are zero, so the last hidden state is the current token's embedding, and the output row of
   * each cycle word is the embedding of the word before it. All the matrices are still multiplied, so a step costs
   * what the shape costs with real weights; the model then continues text it generated, token for token, which is
   * what prompt-lookup speculative decoding needs to be measured at full acceptance. SentencePiece vocabularies only.
   */
  cycle?: number;
  /** A chat template with its own special tokens, and weights that make some of them follow others. */
  chat?: SyntheticChat;
}

/**
 * A chat model's trimmings for a synthetic file: the Jinja template (`tokenizer.chat_template`), its special tokens
 * (control tokens at the end of the vocabulary), which of them ends a turn, and bigram rules that fix the next token
 * after a given one (e.g. a turn-opening token is always followed by a tool-call token), so a test can count on it.
 */
export interface SyntheticChat {
  template: string;
  specialTokens: string[];
  /** The end-of-sequence token (one of `specialTokens`). */
  eosToken: string;
  /** `[after, next]`: after the token `after`, `next` has by far the highest logit. At most one rule per embedding dimension. */
  bigrams: [after: string, next: string][];
}

/**
 * Bumped whenever the bytes produced for a given spec change, so caches keyed on the spec (see syntheticModels.ts)
 * do not serve files from an older generator.
 */
export const GGUF_WRITER_VERSION = 1;

const GGUF_ALIGNMENT = 32;
const Q8_0_BLOCK = 32;
const Q8_0_BLOCK_BYTES = 34;
const WEIGHT_SCALE = 0.02;
/**
 * Target standard deviation of the logits of favoured (English word) tokens. RMS-normed hidden states have norm
 * sqrt(n_embd), so output rows get std WORD_LOGIT_STD / sqrt(n_embd). At 4 the favoured words outweigh the
 * zero-logit byte/control tokens by orders of magnitude even when sampling at temperature 1.
 */
const WORD_LOGIT_STD = 4;
/** ~4 MiB of tensor data per write keeps memory flat regardless of model size. */
const CHUNK_BYTES = 4 << 20;

/** GGUF metadata value type ids (plain object rather than an enum so the file stays erasable-syntax TypeScript). */
const ValueType = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;
type ValueType = (typeof ValueType)[keyof typeof ValueType];

const ggmlTypeId: Record<GgufTensorType, number> = { F32: 0, F16: 1, Q8_0: 8 };
/** llama_ftype values: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0. */
const fileTypeId: Record<GgufTensorType, number> = { F32: 0, F16: 1, Q8_0: 7 };

const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, BYTE: 6 } as const;

// ---------------------------------------------------------------------------------------------------------------
// float -> half

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary32 -> binary16 bits, round-to-nearest-even, with subnormals, Inf and NaN handled like C casts. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const halfExp = exp - 127 + 15;
  if (halfExp >= 0x1f) return sign | 0x7c00;
  if (halfExp <= 0) {
    // Below 2^-25 even the largest float mantissa rounds to zero.
    if (halfExp < -10) return sign;
    const full = mant | 0x800000;
    const shift = 14 - halfExp;
    let half = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    // A carry out of the mantissa lands in the exponent field, which is exactly the smallest normal.
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (halfExp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // Carry may overflow into the exponent (and up to Inf), which is the correct rounding result.
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

// ---------------------------------------------------------------------------------------------------------------
// vocabulary

/** Common English words; they are the tokens the output layer favours so that generated text reads as words. */
const ENGLISH_WORDS = (
  "the of and to a in is it you that he was for on are with as I his they be at one have this from or had by " +
  "hot word but what some we can out other were all there when up use your how said an each she which do their " +
  "time if will way about many then them write would like so these her long make thing see him two has look more " +
  "day could go come did number sound no most people my over know water than call first who may down side been " +
  "now find any new work part take get place made live where after back little only round man year came show " +
  "every good me give our under name very through just form sentence great think say help low line differ turn " +
  "cause much mean before move right boy old too same tell does set three want air well also play small end put " +
  "home read hand port large spell add even land here must big high such follow act why ask men change went " +
  "light kind off need house picture try us again animal point mother world near build self earth father head " +
  "stand own page should country found answer school grow study still learn plant cover food sun four between " +
  "state keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late " +
  "run while press close night real life few north open seem together next white children begin got walk " +
  "example ease paper group always music those both mark often letter until mile river car feet care second book " +
  "carry took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color " +
  "face wood main enough plain girl usual young ready above ever red list though feel talk bird soon body dog " +
  "family direct pose leave song measure door product black short numeral class wind question happen complete " +
  "ship area half rock order fire south problem piece told knew pass since top whole king space heard best hour " +
  "better true during hundred five remember step early hold west ground interest reach fast verb sing listen six " +
  "table travel less morning ten simple several vowel toward war lay against pattern slow center love person " +
  "money serve appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead " +
  "cry dark machine note wait plan figure star box noun field rest correct able pound done beauty drive stood " +
  "contain front teach week final gave green oh quick develop ocean warm free minute strong special mind behind " +
  "clear tail produce fact street inch multiply nothing course stay wheel full force blue object decide surface " +
  "deep moon island foot system busy test record boat common gold possible plane stead dry wonder laugh thousand " +
  "ago ran check game shape equate miss brought heat snow tire bring yes distant fill east paint language among"
).split(" ");

/** Pieces without the word-start marker, so ordinary text tokenizes into word parts rather than raw bytes. */
const SUFFIX_PIECES = ["s", "es", "ed", "ing", "er", "ly", "est", "tion", "ment", "ness", "'s", "n't", "'re", "'ll"];
const PUNCTUATION = [".", ",", "!", "?", ":", ";", "'", '"', "-", "(", ")"];
const SINGLE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".split("");

const SYLLABLE_CONSONANTS = "bdfgklmnprstvz".split("");
const SYLLABLE_VOWELS = "aeiou".split("");

/** Pronounceable pseudo-words (consonant-vowel syllables), in a fixed order so the vocabulary is reproducible. */
function* generatedPieces(): Generator<string> {
  const syllables: string[] = [];
  for (const c of SYLLABLE_CONSONANTS) for (const v of SYLLABLE_VOWELS) syllables.push(c + v);
  for (let length = 1; ; length++) {
    const total = syllables.length ** length;
    for (let index = 0; index < total; index++) {
      let rest = index;
      let word = "";
      for (let s = 0; s < length; s++) {
        word += syllables[rest % syllables.length];
        rest = Math.floor(rest / syllables.length);
      }
      yield `\u2581${word}`;
      yield word;
    }
  }
}

interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Tokens whose output-layer rows carry signal; every other row is zero so it never wins against them. */
  favoured: boolean[];
  /** BPE only: the merge rules, highest priority first ("Ġt h" makes "Ġth"). */
  merges?: string[];
  bos: number;
  eos: number;
  fim?: { prefix: number; suffix: number; middle: number };
}

const FIM_TOKENS = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"] as const;

/**
 * The spec's vocabulary: SentencePiece or BPE, with fill-in-the-middle tokens and a chat's special tokens at the end
 * (control tokens), so every other token keeps the id it has without them.
 */
function vocabularyOf(spec: SyntheticLlamaSpec): Vocabulary {
  const extra = [...(spec.fim ? FIM_TOKENS : []), ...(spec.chat?.specialTokens ?? [])];
  const size = spec.vocabSize - extra.length;
  const vocab = spec.tokenizer === "bpe" ? buildBpeVocabulary(size) : buildVocabulary(size);
  const first = vocab.tokens.length;
  for (const token of extra) {
    if (vocab.tokens.includes(token)) throw new Error(`synthetic GGUF: special token ${token} is already in the vocabulary`);
    vocab.tokens.push(token);
    vocab.scores.push(0);
    vocab.types.push(TokenType.CONTROL);
    vocab.favoured.push(false);
  }
  if (spec.fim) vocab.fim = { prefix: first, suffix: first + 1, middle: first + 2 };
  if (spec.chat) vocab.eos = vocab.tokens.indexOf(spec.chat.eosToken);
  if (vocab.eos < 0) throw new Error("synthetic GGUF: the end-of-sequence token is not in the vocabulary");
  return vocab;
}

const FIRST_PIECE_ID = 3 + 256;

function buildVocabulary(vocabSize: number): Vocabulary {
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TokenType.BYTE);
  }
  const favoured: boolean[] = tokens.map(() => false);
  const seen = new Set(tokens);
  const add = (piece: string, isFavoured: boolean): void => {
    if (tokens.length >= vocabSize || seen.has(piece)) return;
    seen.add(piece);
    tokens.push(piece);
    types.push(TokenType.NORMAL);
    favoured.push(isFavoured);
  };
  add("\u2581", false);
  for (const word of ENGLISH_WORDS) add(`\u2581${word}`, true);
  for (const p of PUNCTUATION) add(p, p === "." || p === ",");
  for (const s of SUFFIX_PIECES) add(s, false);
  for (const c of SINGLE_CHARS) add(c, false);
  for (const word of ENGLISH_WORDS) add(word, false);
  if (tokens.length < vocabSize) {
    for (const piece of generatedPieces()) {
      add(piece, false);
      if (tokens.length >= vocabSize) break;
    }
  }
  // SentencePiece-style scores: earlier pieces are more frequent and win merges.
  const scores = tokens.map((_, id) => (id < FIRST_PIECE_ID ? 0 : -(id - FIRST_PIECE_ID)));
  return { tokens, scores, types, favoured, bos: 1, eos: 2 };
}

/** GPT-2's byte-to-character table: printable bytes stand for themselves, the others (space: "Ġ") for U+0100 onwards. */
const byteChars: string[] = (() => {
  const chars: string[] = [];
  let next = 256;
  for (let byte = 0; byte < 256; byte++) {
    const printable = (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
    chars.push(String.fromCodePoint(printable ? byte : next++));
  }
  return chars;
})();

/** Text in GPT-2's byte-level alphabet. */
function byteLevel(text: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) out += byteChars[byte];
  return out;
}

/**
 * A GPT-2-style vocabulary: the 256 byte tokens, then words built up one character at a time by merges ("Ġ t" →
 * "Ġt", "Ġt h" → "Ġth", ...), then `<|endoftext|>` (beginning and end of text, as GPT-2 uses it).
 */
function buildBpeVocabulary(vocabSize: number): Vocabulary {
  const tokens = [...byteChars];
  const types: number[] = tokens.map(() => TokenType.NORMAL);
  const favoured: boolean[] = tokens.map((t) => t === "." || t === ",");
  const merges: string[] = [];
  const ids = new Map(tokens.map((token, id) => [token, id]));
  const room = vocabSize - 1; // the last id is <|endoftext|>
  const addWord = (word: string, isFavoured: boolean): void => {
    const chars = [...byteLevel(word)];
    let built = chars[0]!;
    for (const char of chars.slice(1)) {
      const merged = built + char;
      if (!ids.has(merged)) {
        if (tokens.length >= room) return;
        ids.set(merged, tokens.length);
        tokens.push(merged);
        types.push(TokenType.NORMAL);
        favoured.push(false);
        merges.push(`${built} ${char}`);
      }
      built = merged;
    }
    if (isFavoured) favoured[ids.get(built)!] = true;
  };
  for (const word of ENGLISH_WORDS) addWord(` ${word}`, true);
  for (const word of ENGLISH_WORDS) addWord(word, false);
  for (const piece of generatedPieces()) {
    if (tokens.length >= room) break;
    addWord(piece.replace("\u2581", " "), false);
  }
  tokens.push("<|endoftext|>");
  types.push(TokenType.CONTROL);
  favoured.push(false);
  const end = tokens.length - 1;
  return { tokens, scores: tokens.map(() => 0), types, favoured, merges, bos: end, eos: end };
}

// ---------------------------------------------------------------------------------------------------------------
// header serialization

class ByteWriter {
  private buffer = new Uint8Array(1 << 16);
  private view = new DataView(this.buffer.buffer);
  length = 0;
  private static encoder = new TextEncoder();

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + bytes) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
    this.view = new DataView(next.buffer);
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buffer[this.length++] = v;
  }
  string(s: string): void {
    const bytes = ByteWriter.encoder.encode(s);
    this.u64(bytes.length);
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad);
    this.buffer.fill(0, this.length, this.length + pad);
    this.length += pad;
  }
  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

type VT = typeof ValueType;
type MetadataValue =
  | { type: VT["UINT32"] | VT["FLOAT32"] | VT["INT32"]; value: number }
  | { type: VT["BOOL"]; value: boolean }
  | { type: VT["STRING"]; value: string }
  | { type: VT["ARRAY"]; itemType: VT["STRING"]; value: string[] }
  | { type: VT["ARRAY"]; itemType: VT["FLOAT32"] | VT["INT32"]; value: number[] };

function writeScalar(w: ByteWriter, type: ValueType, value: number | string | boolean): void {
  switch (type) {
    case ValueType.UINT32:
      w.u32(value as number);
      break;
    case ValueType.INT32:
      w.i32(value as number);
      break;
    case ValueType.FLOAT32:
      w.f32(value as number);
      break;
    case ValueType.BOOL:
      w.u8(value ? 1 : 0);
      break;
    case ValueType.STRING:
      w.string(value as string);
      break;
    default:
      throw new Error(`unsupported GGUF scalar type ${type}`);
  }
}

function writeMetadata(w: ByteWriter, key: string, entry: MetadataValue): void {
  w.string(key);
  w.u32(entry.type);
  if (entry.type === ValueType.ARRAY) {
    w.u32(entry.itemType);
    w.u64(entry.value.length);
    for (const item of entry.value) writeScalar(w, entry.itemType, item);
  } else {
    writeScalar(w, entry.type, entry.value);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// tensors

interface TensorPlan {
  name: string;
  /** GGUF order: dims[0] is the fastest-varying (row length), dims[1] the number of rows. */
  dims: number[];
  type: GgufTensorType;
  /** Per-row standard deviation; 0 rows are written as exact zeros. `null` means constant 1.0 (norm weights). */
  rowStd: ((row: number) => number) | null;
  /** Overwrites some values of a row after it is filled (the bigram rules). */
  patchRow?: (row: number, values: Float32Array) => void;
  /** Rows with values of their own (the cycle model's output rows); they take no noise. */
  rowValues?: ReadonlyMap<number, Float32Array>;
  offset: number;
  byteSize: number;
}

function rowBytes(type: GgufTensorType, rowLength: number): number {
  switch (type) {
    case "F32":
      return rowLength * 4;
    case "F16":
      return rowLength * 2;
    case "Q8_0":
      return (rowLength / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  }
}

function validateSpec(spec: SyntheticLlamaSpec): void {
  const positive = ["embedding", "layers", "heads", "kvHeads", "feedForward", "contextLength", "vocabSize"] as const;
  for (const key of positive) {
    const value = spec[key];
    if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`synthetic GGUF: ${key} must be a positive integer, got ${value}`);
  }
  if (!Number.isSafeInteger(spec.seed)) throw new Error(`synthetic GGUF: seed must be an integer, got ${spec.seed}`);
  if (!(spec.tensorType in ggmlTypeId)) throw new Error(`synthetic GGUF: unsupported tensor type ${String(spec.tensorType)}`);
  if (spec.embedding % spec.heads !== 0) throw new Error("synthetic GGUF: embedding must be divisible by heads");
  if (spec.heads % spec.kvHeads !== 0) throw new Error("synthetic GGUF: heads must be divisible by kvHeads");
  if ((spec.embedding / spec.heads) % 2 !== 0) throw new Error("synthetic GGUF: head dimension must be even for RoPE");
  const smallest =
    (spec.tokenizer === "bpe" ? 256 + 1 : FIRST_PIECE_ID + 1) + (spec.fim ? FIM_TOKENS.length : 0) + (spec.chat?.specialTokens.length ?? 0);
  if (spec.vocabSize < smallest) throw new Error(`synthetic GGUF: vocabSize must be at least ${smallest}`);
  if (spec.cycle !== undefined && (!Number.isSafeInteger(spec.cycle) || spec.cycle < 2 || spec.tokenizer === "bpe"))
    throw new Error("synthetic GGUF: cycle must be an integer >= 2, with the SentencePiece vocabulary");
  if (spec.tensorType === "Q8_0" && (spec.embedding % Q8_0_BLOCK !== 0 || spec.feedForward % Q8_0_BLOCK !== 0))
    throw new Error("synthetic GGUF: Q8_0 needs embedding and feedForward divisible by 32");
}

/** Size of the embedding component a bigram rule writes: it dominates the RMS norm of that position. */
const BIGRAM_EMBEDDING = 1;
/** Output weight of a rule's `next` token on its component: its logit becomes ~this x sqrt(n_embd), far above any word's. */
const BIGRAM_OUTPUT = 2;

/**
 * Bigram rule r owns embedding dimension r: only its `after` token has a value there, no layer writes into it (those
 * output rows are zero), and only its `next` token reads it in the output layer. So after `after`, `next` wins.
 */
function bigramPatches(spec: SyntheticLlamaSpec, vocab: Vocabulary) {
  const rules = (spec.chat?.bigrams ?? []).map(([after, next]) => [vocab.tokens.indexOf(after), vocab.tokens.indexOf(next)] as const);
  rules.forEach(([after, next], r) => {
    if (after < 0 || next < 0) throw new Error(`synthetic GGUF: bigram rule ${r} names a token that is not in the vocabulary`);
  });
  if (rules.length > spec.embedding) throw new Error("synthetic GGUF: more bigram rules than embedding dimensions");
  const component = (side: 0 | 1, value: number) => (row: number, values: Float32Array) => {
    for (let r = 0; r < rules.length; r++) values[r] = rules[r]![side] === row ? value : 0;
  };
  return {
    count: rules.length,
    embedding: rules.length === 0 ? undefined : component(0, BIGRAM_EMBEDDING),
    output: rules.length === 0 ? undefined : component(1, BIGRAM_OUTPUT),
  };
}

function planTensors(spec: SyntheticLlamaSpec, vocab: Vocabulary): TensorPlan[] {
  const { embedding: embd, feedForward: ff, tensorType: type } = spec;
  const kvDim = spec.kvHeads * (embd / spec.heads);
  const uniform = (): number => WEIGHT_SCALE;
  const bigrams = bigramPatches(spec, vocab);
  // Layers never write into a bigram rule's dimension, so it carries the current token's rule to the output.
  const residualWrite = (row: number): number => (row < bigrams.count ? 0 : WEIGHT_SCALE);
  // The cycle model's blocks add nothing to the residual stream.
  const blockOutput = spec.cycle ? () => 0 : residualWrite;
  const wordStd = WORD_LOGIT_STD / Math.sqrt(embd);
  const plans: Omit<TensorPlan, "offset" | "byteSize">[] = [];
  const matrix = (name: string, rowLength: number, rows: number, rowStd: (row: number) => number = uniform): void => {
    plans.push({ name, dims: [rowLength, rows], type, rowStd });
  };
  const norm = (name: string): void => {
    plans.push({ name, dims: [embd], type: "F32", rowStd: null });
  };

  matrix("token_embd.weight", embd, spec.vocabSize);
  plans.at(-1)!.patchRow = bigrams.embedding;
  for (let layer = 0; layer < spec.layers; layer++) {
    const p = `blk.${layer}.`;
    norm(`${p}attn_norm.weight`);
    matrix(`${p}attn_q.weight`, embd, embd);
    matrix(`${p}attn_k.weight`, embd, kvDim);
    matrix(`${p}attn_v.weight`, embd, kvDim);
    matrix(`${p}attn_output.weight`, embd, embd, blockOutput);
    norm(`${p}ffn_norm.weight`);
    matrix(`${p}ffn_gate.weight`, embd, ff);
    matrix(`${p}ffn_up.weight`, embd, ff);
    matrix(`${p}ffn_down.weight`, ff, embd, blockOutput);
  }
  norm("output_norm.weight");
  // llama has no output bias, so zeroing the rows of bytes/control/sub-word tokens pins their logits at 0 while
  // word rows spread far above and below it; sampling then almost always lands on a whole word.
  if (spec.cycle)
    plans.push({ name: "output.weight", dims: [embd, spec.vocabSize], type, rowStd: () => 0, rowValues: cycleRows(spec, vocab) });
  else {
    matrix("output.weight", embd, spec.vocabSize, (row) => (vocab.favoured[row] ? wordStd : 0));
    plans.at(-1)!.patchRow = bigrams.output;
  }

  let offset = 0;
  return plans.map((plan) => {
    const rows = plan.dims[1] ?? 1;
    const byteSize = rowBytes(plan.type, plan.dims[0]!) * rows;
    const placed: TensorPlan = { ...plan, offset, byteSize };
    offset += byteSize;
    offset += (GGUF_ALIGNMENT - (offset % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
    return placed;
  });
}

/** The first `spec.cycle` favoured word tokens, in vocabulary order: the words the cycle model repeats. */
export function cycleTokens(spec: SyntheticLlamaSpec): number[] {
  return cycleTokensOf(spec, vocabularyOf(spec));
}

function cycleTokensOf(spec: SyntheticLlamaSpec, vocab: Vocabulary): number[] {
  const words: number[] = [];
  for (let id = 0; id < vocab.tokens.length && words.length < (spec.cycle ?? 0); id++)
    if (vocab.favoured[id] && vocab.tokens[id]!.startsWith("\u2581")) words.push(id);
  if (words.length < (spec.cycle ?? 0))
    throw new Error(`synthetic GGUF: the vocabulary has fewer than ${spec.cycle} words to cycle through`);
  return words;
}

/**
 * The cycle model's output rows: word i's row is the embedding of word i-1, scaled so that its logit after word i-1 is
 * about 20 while every other word's stays near 0 (random embeddings are nearly orthogonal). The embedding rows are the
 * token_embd tensor's own noise, replayed from its seed.
 */
function cycleRows(spec: SyntheticLlamaSpec, vocab: Vocabulary): Map<number, Float32Array> {
  const words = cycleTokensOf(spec, vocab);
  const wanted = new Set(words);
  const embeddings = new Map<number, Float32Array>();
  const row = new Float32Array(spec.embedding);
  let state = tensorSeed(spec.seed, "token_embd.weight");
  for (let id = 0; id <= Math.max(...words); id++) {
    state = fillNoise(row, spec.embedding, WEIGHT_SCALE, state);
    if (wanted.has(id)) embeddings.set(id, row.slice());
  }
  // rms_norm makes the hidden state's norm sqrt(n_embd); an embedding's norm is about WEIGHT_SCALE * sqrt(n_embd).
  const scale = 20 / (WEIGHT_SCALE * spec.embedding);
  const rows = new Map<number, Float32Array>();
  words.forEach((word, i) => {
    const before = embeddings.get(words[(i + words.length - 1) % words.length]!)!;
    rows.set(
      word,
      before.map((value) => value * scale),
    );
  });
  return rows;
}

/** FNV-1a over the tensor name mixed with the seed, so each tensor's stream is independent of write order. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed | 0) ^ Math.floor(seed / 0x100000000);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  // Final avalanche (murmur3 fmix32); xorshift must never start at 0.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h === 0 ? 0x9e3779b9 : h;
}

/**
 * Fills `out` with zero-mean noise of standard deviation `std` and returns the new xorshift32 state. The noise is the
 * sum of two 16-bit uniforms (triangular distribution, variance 1/6 on [-1, 1)): not Gaussian, but it has the right
 * scale, is bounded (no outliers that could overflow F16) and costs one PRNG step per value instead of log/sqrt/cos.
 */
function fillNoise(out: Float32Array, length: number, std: number, state: number): number {
  const scale = (std * Math.sqrt(6)) / 65536;
  let s = state;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s & 0xffff) + ((s >>> 16) & 0xffff) - 65536) * scale;
  }
  return s;
}

function encodeRowF32(row: Float32Array, length: number, out: DataView, at: number): void {
  for (let i = 0; i < length; i++) out.setFloat32(at + i * 4, row[i]!, true);
}

function encodeRowF16(row: Float32Array, length: number, out: DataView, at: number): void {
  for (let i = 0; i < length; i++) out.setUint16(at + i * 2, float32ToFloat16Bits(row[i]!), true);
}

/** Same math as ggml's quantize_row_q8_0_ref: d = amax/127 stored as f16, q = roundf(x/d) (half away from zero). */
function encodeRowQ8_0(row: Float32Array, length: number, out: DataView, bytes: Int8Array, at: number): void {
  for (let block = 0; block < length; block += Q8_0_BLOCK) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const a = Math.abs(row[block + i]!);
      if (a > amax) amax = a;
    }
    const d = Math.fround(amax / 127);
    const inv = d !== 0 ? 1 / d : 0;
    out.setUint16(at, float32ToFloat16Bits(d), true);
    const q = at + 2;
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const x = row[block + i]! * inv;
      bytes[q + i] = x < 0 ? -Math.round(-x) : Math.round(x);
    }
    at += Q8_0_BLOCK_BYTES;
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function writeTensorData(file: FileHandle, plan: TensorPlan, seed: number, chunk: ArrayBuffer): Promise<void> {
  const rowLength = plan.dims[0]!;
  const rows = plan.dims[1] ?? 1;
  const bytesPerRow = rowBytes(plan.type, rowLength);
  const rowsPerChunk = Math.max(1, Math.floor(chunk.byteLength / bytesPerRow));
  const view = new DataView(chunk);
  const int8 = new Int8Array(chunk);
  const u8 = new Uint8Array(chunk);
  const row = new Float32Array(rowLength);
  let state = tensorSeed(seed, plan.name);

  for (let first = 0; first < rows; first += rowsPerChunk) {
    const count = Math.min(rowsPerChunk, rows - first);
    for (let r = 0; r < count; r++) {
      const std = plan.rowStd === null ? null : plan.rowStd(first + r);
      const values = plan.rowValues?.get(first + r);
      if (values) row.set(values);
      else if (std === null) row.fill(1);
      else if (std === 0) row.fill(0);
      else state = fillNoise(row, rowLength, std, state);
      plan.patchRow?.(first + r, row);
      const at = r * bytesPerRow;
      if (plan.type === "F32") encodeRowF32(row, rowLength, view, at);
      else if (plan.type === "F16") encodeRowF16(row, rowLength, view, at);
      else encodeRowQ8_0(row, rowLength, view, int8, at);
    }
    await writeFully(file, u8.subarray(0, count * bytesPerRow));
  }
}

async function writeFully(file: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await file.write(data, done, data.length - done);
    if (bytesWritten <= 0) throw new Error("synthetic GGUF: short write");
    done += bytesWritten;
  }
}

let tmpCounter = 0;

/**
 * Writes `spec` as a GGUF v3 file at `path`. The same spec always yields byte-identical output. The file appears
 * atomically: data goes to a temporary sibling that is renamed over `path` only once complete.
 */
export async function writeLlamaGguf(path: string, spec: SyntheticLlamaSpec): Promise<void> {
  validateSpec(spec);
  // Typed-array views below write native byte order; GGUF is little endian.
  if (endianness() !== "LE") throw new Error("synthetic GGUF: writing requires a little-endian host");

  const vocab = vocabularyOf(spec);
  if (vocab.tokens.length !== spec.vocabSize) throw new Error(`synthetic GGUF: could not build ${spec.vocabSize} unique tokens`);
  const tensors = planTensors(spec, vocab);
  const header = encodeHeader(metadataOf(spec, vocab), tensors);

  await writeAtomically(path, async (file) => {
    await writeFully(file, header);
    const chunk = new ArrayBuffer(CHUNK_BYTES);
    const zeros = new Uint8Array(GGUF_ALIGNMENT);
    let written = 0;
    for (const t of tensors) {
      if (t.offset > written) await writeFully(file, zeros.subarray(0, t.offset - written));
      await writeTensorData(file, t, spec.seed, chunk);
      written = t.offset + t.byteSize;
    }
    // gguf-py pads after every tensor, the last included; match it so loaders that check padded sizes agree.
    const tail = (GGUF_ALIGNMENT - (written % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT;
    if (tail > 0) await writeFully(file, zeros.subarray(0, tail));
  });
}

/** The key/value metadata of a llama GGUF: architecture shape and the SentencePiece-style tokenizer. */
function metadataOf(spec: SyntheticLlamaSpec, vocab: Vocabulary): [string, MetadataValue][] {
  return [
    ["general.architecture", { type: ValueType.STRING, value: "llama" }],
    ["general.name", { type: ValueType.STRING, value: spec.name }],
    ["general.alignment", { type: ValueType.UINT32, value: GGUF_ALIGNMENT }],
    ["general.file_type", { type: ValueType.UINT32, value: fileTypeId[spec.tensorType] }],
    ["llama.context_length", { type: ValueType.UINT32, value: spec.contextLength }],
    ["llama.embedding_length", { type: ValueType.UINT32, value: spec.embedding }],
    ["llama.block_count", { type: ValueType.UINT32, value: spec.layers }],
    ["llama.feed_forward_length", { type: ValueType.UINT32, value: spec.feedForward }],
    ["llama.attention.head_count", { type: ValueType.UINT32, value: spec.heads }],
    ["llama.attention.head_count_kv", { type: ValueType.UINT32, value: spec.kvHeads }],
    ["llama.rope.dimension_count", { type: ValueType.UINT32, value: spec.embedding / spec.heads }],
    ["llama.attention.layer_norm_rms_epsilon", { type: ValueType.FLOAT32, value: 1e-5 }],
    ["llama.vocab_size", { type: ValueType.UINT32, value: spec.vocabSize }],
    ...tokenizerMetadata(spec, vocab),
  ];
}

/** The tokenizer's keys: its kind, the vocabulary, special tokens and (BPE) merges. */
function tokenizerMetadata(spec: SyntheticLlamaSpec, vocab: Vocabulary): [string, MetadataValue][] {
  const bpe = spec.tokenizer === "bpe";
  const entries: [string, MetadataValue][] = [
    ["tokenizer.ggml.model", { type: ValueType.STRING, value: bpe ? "gpt2" : "llama" }],
    ...(bpe ? ([["tokenizer.ggml.pre", { type: ValueType.STRING, value: "gpt-2" }]] as [string, MetadataValue][]) : []),
    ["tokenizer.ggml.tokens", { type: ValueType.ARRAY, itemType: ValueType.STRING, value: vocab.tokens }],
    ["tokenizer.ggml.scores", { type: ValueType.ARRAY, itemType: ValueType.FLOAT32, value: vocab.scores }],
    ["tokenizer.ggml.token_type", { type: ValueType.ARRAY, itemType: ValueType.INT32, value: vocab.types }],
    ...(vocab.merges
      ? ([["tokenizer.ggml.merges", { type: ValueType.ARRAY, itemType: ValueType.STRING, value: vocab.merges }]] as [
          string,
          MetadataValue,
        ][])
      : []),
    ["tokenizer.ggml.bos_token_id", { type: ValueType.UINT32, value: vocab.bos }],
    ["tokenizer.ggml.eos_token_id", { type: ValueType.UINT32, value: vocab.eos }],
    ...(bpe ? [] : ([["tokenizer.ggml.unknown_token_id", { type: ValueType.UINT32, value: 0 }]] as [string, MetadataValue][])),
    ["tokenizer.ggml.add_bos_token", { type: ValueType.BOOL, value: !bpe }],
    ["tokenizer.ggml.add_eos_token", { type: ValueType.BOOL, value: false }],
    ...(spec.chat
      ? ([["tokenizer.chat_template", { type: ValueType.STRING, value: spec.chat.template }]] as [string, MetadataValue][])
      : []),
  ];
  if (vocab.fim) {
    entries.push(["tokenizer.ggml.fim_pre_token_id", { type: ValueType.UINT32, value: vocab.fim.prefix }]);
    entries.push(["tokenizer.ggml.fim_suf_token_id", { type: ValueType.UINT32, value: vocab.fim.suffix }]);
    entries.push(["tokenizer.ggml.fim_mid_token_id", { type: ValueType.UINT32, value: vocab.fim.middle }]);
  }
  return entries;
}

/** Magic, version, counts, metadata and tensor infos, padded to the alignment where tensor data starts. */
function encodeHeader(metadata: [string, MetadataValue][], tensors: TensorPlan[]): Uint8Array {
  const header = new ByteWriter();
  header.u32(0x46554747); // "GGUF"
  header.u32(3);
  header.u64(tensors.length);
  header.u64(metadata.length);
  for (const [key, value] of metadata) writeMetadata(header, key, value);
  for (const t of tensors) {
    header.string(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(ggmlTypeId[t.type]);
    header.u64(t.offset);
  }
  header.padTo(GGUF_ALIGNMENT);
  return header.bytes();
}

/** Writes through `fill` into a temporary sibling, renamed over `path` only once complete; removed on failure. */
async function writeAtomically(path: string, fill: (file: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmpPath = `${path}.tmp-${process.pid}-${tmpCounter++}`;
  const file = await open(tmpPath, "w");
  try {
    await fill(file);
    await file.close();
    await rename(tmpPath, path);
  } catch (error) {
    await file.close().catch(() => undefined);
    await rm(tmpPath, { force: true });
    throw error;
  }
}
