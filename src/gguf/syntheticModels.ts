// Named synthetic model presets and an on-disk cache so tests, demos and benchmarks share generated GGUF files.
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { GGUF_WRITER_VERSION, type SyntheticChat, writeLlamaGguf, type SyntheticLlamaSpec } from "./writeLlamaGguf.ts";

const tinyShape = {
  embedding: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  feedForward: 128,
  contextLength: 2048,
  vocabSize: 1000,
} as const;

/**
 * A ChatML-style Jinja template with tool calling in its own syntax (`<tool_call>NAME\n{JSON}</tool_call>`, results
 * in `tool` turns), as real tool models ship them. An assistant turn that answers a user opens with `<|act|>`; one
 * that follows tool results opens with `<|answer|>`.
 */
const toolChatTemplate = `{%- if tools -%}<|im_start|>system
You may call these tools: {{ tools | tojson }}
To call one, write <tool_call> then its name, a new line, and its arguments as JSON.<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
<|im_start|>assistant
{% if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}<|act|>{% else %}<|answer|>{% endif %}{{ message.content }}
{%- if message.tool_calls -%}{%- for call in message.tool_calls -%}<tool_call>{{ call.function.name }}
{{ call.function.arguments | tojson }}</tool_call>{%- endfor -%}{%- endif -%}<|im_end|>
{% elif message.role == 'tool' -%}
<|im_start|>tool
{{ message.content }}<|im_end|>
{% else -%}
<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|im_start|>assistant
{% if messages[-1].role != 'tool' %}<|act|>{% else %}<|answer|>{% endif %}{%- endif -%}`;

/**
 * Random weights that still make tool calling deterministic: every answer to a user is one tool call (`auto` calls),
 * the turn ends after it, and the answer after tool results is " done." Any text ends at its first full stop.
 */
const toolCaller: SyntheticChat = {
  template: toolChatTemplate,
  specialTokens: ["<|im_start|>", "<|im_end|>", "<|act|>", "<|answer|>", "<tool_call>", "</tool_call>"],
  eosToken: "<|im_end|>",
  bigrams: [
    ["<|act|>", "<tool_call>"],
    ["</tool_call>", "<|im_end|>"],
    ["<|answer|>", "\u2581done"],
    ["\u2581done", "."],
    [".", "<|im_end|>"],
  ],
};

const smollmShape = {
  embedding: 576,
  layers: 30,
  heads: 9,
  kvHeads: 3,
  feedForward: 1536,
  contextLength: 2048,
  vocabSize: 32000,
  tensorType: "Q8_0",
} as const;

export const syntheticPresets: Record<string, SyntheticLlamaSpec> = {
  demo: { name: "synthetic-demo", seed: 1, ...tinyShape, tensorType: "Q8_0" },
  "tiny-f32": { name: "synthetic-tiny-f32", seed: 1, ...tinyShape, tensorType: "F32" },
  "tiny-f16": { name: "synthetic-tiny-f16", seed: 1, ...tinyShape, tensorType: "F16" },
  // A real-size (llama-2-like) 32k vocabulary on the tiny shape: tokenizer and vocabulary-bound costs without a big model.
  "tiny-32k": { name: "synthetic-tiny-32k", seed: 1, ...tinyShape, vocabSize: 32000, tensorType: "Q8_0" },
  // A GPT-2-style byte-level BPE vocabulary (merges, space clean-up in the detokenizer) on the tiny shape.
  "tiny-bpe": { name: "synthetic-tiny-bpe", seed: 1, ...tinyShape, tensorType: "Q8_0", tokenizer: "bpe" },
  // Fill-in-the-middle tokens (prefix, suffix, middle), as code models have them.
  "tiny-fim": { name: "synthetic-tiny-fim", seed: 1, ...tinyShape, tensorType: "Q8_0", fim: true },
  // A chat model with a tool-calling template (node-llama-cpp reads its syntax from the template) that always calls.
  "tiny-tools": { name: "synthetic-tiny-tools", seed: 1, ...tinyShape, tensorType: "Q8_0", chat: toolCaller },
  // Same shape as SmolLM2-135M, so benchmarks exercise realistic matmul sizes without a download.
  "smollm2-135m": { name: "synthetic-smollm2-135m", seed: 1, ...smollmShape },
  // Models that repeat a cycle of 64 words (SyntheticLlamaSpec.cycle): continuing their own text, every token is in the
  // prompt, so prompt-lookup speculative decoding can be measured at full acceptance, on the tiny and a realistic shape.
  "tiny-cycle": { name: "synthetic-tiny-cycle", seed: 1, ...tinyShape, tensorType: "Q8_0", cycle: 64 },
  "smollm2-135m-cycle": { name: "synthetic-smollm2-135m-cycle", seed: 1, ...smollmShape, cycle: 64 },
};

/** Hash of every field in a fixed order plus the writer version, so any change to spec or generator gets a new file. */
function specHash(spec: SyntheticLlamaSpec): string {
  const canonical = JSON.stringify([
    GGUF_WRITER_VERSION,
    spec.name,
    spec.seed,
    spec.embedding,
    spec.layers,
    spec.heads,
    spec.kvHeads,
    spec.feedForward,
    spec.contextLength,
    spec.vocabSize,
    spec.tensorType,
    // Only when set, so the files of presets that predate these fields keep their names.
    ...(spec.tokenizer && spec.tokenizer !== "spm" ? [spec.tokenizer] : []),
    ...(spec.fim ? ["fim"] : []),
    ...(spec.chat ? [spec.chat] : []),
    ...(spec.cycle ? [`cycle${spec.cycle}`] : []),
  ]);
  return createHash("sha256").update(canonical).digest("hex").slice(0, 12);
}

export function syntheticModelPath(preset: string, cacheDir: string): string {
  const spec = syntheticPresets[preset];
  if (!spec) throw new Error(`unknown synthetic model "${preset}"; known: ${Object.keys(syntheticPresets).join(", ")}`);
  return join(cacheDir, "models", `synthetic-${preset}-${specHash(spec)}.gguf`);
}

/** Concurrent callers in one process share a single write instead of each generating the same bytes. */
const inFlight = new Map<string, Promise<string>>();

/**
 * Returns the cached GGUF for `preset`, writing it first if missing. Concurrent processes may both write, but each
 * writes a private temp file and renames it into place, and the contents are identical, so readers never see a
 * partial file.
 */
export async function ensureSyntheticModel(preset: string, cacheDir: string): Promise<string> {
  const spec = syntheticPresets[preset];
  const path = syntheticModelPath(preset, cacheDir);
  const existing = await stat(path).catch(() => null);
  if (existing?.isFile()) return path;

  const pending = inFlight.get(path);
  if (pending) return pending;
  const job = writeLlamaGguf(path, spec!)
    .then(() => path)
    .finally(() => inFlight.delete(path));
  inFlight.set(path, job);
  return job;
}
