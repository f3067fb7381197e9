/** Reads what a GGUF header says about a model (architecture, size, quantization, template, capabilities, every key), once per file version. */
import { stat } from "node:fs/promises";
import type { ModelFacts } from "./types.ts";
import { importNodeLlamaCpp } from "./nodeLlamaCpp.ts";

/** Architectures whose GGUFs are sentence-embedding models rather than chat models. */
const embeddingArchitectures = new Set(["bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5encoder", "modern-bert"]);

const cache = new Map<string, { version: string; facts: Promise<ModelFacts> }>();

/** The facts of the GGUF at `path`; cached by path, size and modification time, so an edited file is read again. */
export async function readModelFacts(path: string): Promise<ModelFacts> {
  const info = await stat(path);
  const version = `${info.size}:${info.mtimeMs}`;
  const cached = cache.get(path);
  if (cached?.version === version) return cached.facts;
  const facts = parseFacts(path);
  cache.set(path, { version, facts });
  facts.catch(() => cache.delete(path));
  return facts;
}

async function parseFacts(path: string): Promise<ModelFacts> {
  const { readGgufFileInfo, GgufFileType, GgmlType } = await importNodeLlamaCpp();
  const info = await readGgufFileInfo(path, { readTensorInfo: true, logWarnings: false });
  const metadata = info.metadata as unknown as Record<string, Record<string, unknown> | undefined>;
  const general = metadata.general ?? {};
  const architecture = String(general.architecture ?? "unknown");
  const arch = (info.architectureMetadata ?? {}) as Record<string, unknown>;
  const ggml = ((metadata.tokenizer as Record<string, unknown> | undefined)?.ggml ?? {}) as Record<string, unknown>;

  let parameterCount = 0;
  const typeCounts = new Map<number, number>();
  for (const tensor of info.tensorInfo ?? []) {
    const elements = tensor.dimensions.reduce((product: number, d) => product * Number(d), 1);
    parameterCount += elements;
    typeCounts.set(tensor.ggmlType, (typeCounts.get(tensor.ggmlType) ?? 0) + elements);
  }
  const fileType = typeof general.file_type === "number" ? GgufFileType[general.file_type] : undefined;
  // Files without general.file_type (older converters): name the type that holds the most weights.
  const dominant = [...typeCounts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const quantization = fileType
    ? fileType.replace(/^(MOSTLY|ALL)_/, "")
    : dominant === undefined
      ? "unknown"
      : (GgmlType[dominant] ?? "unknown");

  const hasToken = (...keys: string[]) => keys.some((key) => typeof ggml[key] === "number" && (ggml[key] as number) >= 0);
  return {
    architecture,
    parameterCount,
    quantization,
    trainedContext: typeof arch.context_length === "number" ? arch.context_length : undefined,
    embeddingLength: typeof arch.embedding_length === "number" ? arch.embedding_length : undefined,
    chatTemplate:
      typeof (metadata.tokenizer as Record<string, unknown> | undefined)?.chat_template === "string"
        ? ((metadata.tokenizer as Record<string, unknown>).chat_template as string)
        : undefined,
    embeddingModel: embeddingArchitectures.has(architecture) || (arch.pooling_type !== undefined && arch.pooling_type !== 0),
    infill:
      (hasToken("fim_pre_token_id") && hasToken("fim_suf_token_id") && hasToken("fim_mid_token_id")) ||
      (hasToken("prefix_token_id") && hasToken("suffix_token_id") && hasToken("middle_token_id")),
    metadata: plainMetadata(metadata),
    tensors: (info.tensorInfo ?? []).map((tensor) => ({
      name: tensor.name,
      type: GgmlType[tensor.ggmlType] ?? String(tensor.ggmlType),
      shape: tensor.dimensions.map(Number),
    })),
  };
}

/** Longer lists (the vocabulary, merges, token types) are left empty: a model's facts stay small. */
const longestList = 64;

/** Every header key flattened to its dotted name, as Ollama's `model_info` shows them. */
function plainMetadata(metadata: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const flatten = (prefix: string, value: unknown) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, inner] of Object.entries(value)) flatten(prefix ? `${prefix}.${key}` : key, inner);
    } else if (Array.isArray(value)) {
      out[prefix] = value.length <= longestList ? value.map((item) => (typeof item === "bigint" ? Number(item) : item)) : [];
    } else {
      out[prefix] = typeof value === "bigint" ? Number(value) : value;
    }
  };
  flatten("", metadata);
  return out;
}
