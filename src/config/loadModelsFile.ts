// Reads models.yaml into the normalized registry config, reporting the first problem as file:line:col with its key path.
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError } from "@sinclair/typebox/value";
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair } from "yaml";
import { parseByteSize } from "./byteSize.ts";
import { expectation } from "./describeSchema.ts";
import { parseDuration } from "./duration.ts";
import {
  CHAT_TEMPLATE_NAMES,
  CHAT_TEMPLATE_RULE,
  MODEL_DEFAULTS,
  MODEL_NAME_RULE,
  ModelsFileSchema,
  type ModelFileEntry,
  type ModelsFile,
  type SamplingDefaultsFile,
} from "./modelsSchema.ts";

export interface SamplingDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  maxTokens?: number;
  stop?: string[];
  repeatPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
}

/**
 * How a model's chats become prompts: "auto" (the GGUF's template, ChatML when it has none), a node-llama-cpp chat
 * wrapper by its canonical name, or a Jinja template (written in models.yaml, or read from `file` when it was loaded).
 */
export type ChatTemplateSetting = { kind: "auto" } | { kind: "wrapper"; name: string } | { kind: "jinja"; template: string; file?: string };

export interface ModelEntry {
  name: string;
  /** Absolute path when the file gave a path; otherwise unchanged (synthetic:..., http(s)://..., hf:...). */
  source: string;
  aliases: string[];
  context: number;
  parallel: number;
  /** Absent: the engine decides, per decode step (ThreadBudget). */
  threads?: number;
  /** Prompt-lookup speculative decoding (PromptLookup.ts). */
  speculative: "auto" | "on" | "off";
  gpuLayers: "auto" | "max" | number;
  chatTemplate: ChatTemplateSetting;
  /** -1 = never unload. */
  keepAliveMs: number;
  maxQueue: number;
  /** Absent: node-llama-cpp's default (mmap where supported). */
  useMmap?: boolean;
  defaults: SamplingDefaults;
}

export interface ModelRegistryConfig {
  /** Absolute path of the yaml file. */
  file: string;
  models: ModelEntry[];
  maxLoadedModels: number;
  memoryBudget: "auto" | number;
  /** `api_keys`: keys clients may use, besides those from the command line. */
  apiKeys: string[];
  /** The registry name of the model for requests that name none: `default_model`, else the only model. */
  defaultModel?: string;
}

/** A problem in models.yaml. `message` is the whole sentence, `<file>:<line>:<col>: <key path>: <problem>`. */
export class ConfigError extends Error {
  override name = "ConfigError";
  /** The file as the caller named it. */
  file: string;
  /** 1-based. */
  line?: number;
  /** 1-based. */
  column?: number;
  /** Dotted key path, e.g. `models.demo.parallel` or `models.demo.aliases[0]`. */
  key?: string;
  /** The message without the location and key prefix. */
  problem: string;

  constructor(file: string, problem: string, where: { line?: number; column?: number; key?: string } = {}, options?: ErrorOptions) {
    const location = where.line === undefined ? file : `${file}:${where.line}:${where.column ?? 1}`;
    super(`${location}: ${where.key ? `${where.key}: ` : ""}${problem}`, options);
    this.file = file;
    this.line = where.line;
    this.column = where.column;
    this.key = where.key;
    this.problem = problem;
  }
}

type PathSegment = string | number;

const HF_SOURCE = /^hf:([^/]+)\/([^/@]+)(?:@([^/]+))?\/(.+\.gguf)$/;

/** Parses and validates models.yaml text. `file` names the file in messages and anchors relative sources. */
export function parseModelsYaml(text: string, file: string): ModelRegistryConfig {
  const yaml = readYaml(text, file);
  const schemaError = firstSchemaError(yaml.doc, yaml.raw);
  if (schemaError) throw yaml.problemAt(schemaError.path, schemaError.problem, schemaError.at);
  const parsed = yaml.raw as ModelsFile;
  checkNames(yaml, parsed);
  const baseDir = dirname(resolve(file));
  const models = Object.entries(parsed.models ?? {}).map(([name, entry]) => {
    const at = (...rest: PathSegment[]) => ["models", name, ...rest];
    if (entry.source.startsWith("hf:") && !HF_SOURCE.test(entry.source))
      throw yaml.problemAt(
        at("source"),
        `expected hf:<owner>/<repo>/<file.gguf> (optionally <repo>@<revision>), got ${JSON.stringify(entry.source)}`,
      );
    if (entry.source === "synthetic:") throw yaml.problemAt(at("source"), 'expected "synthetic:<preset>" with a preset name');
    let keepAliveMs: number;
    try {
      keepAliveMs = parseDuration(entry.keep_alive ?? MODEL_DEFAULTS.keepAlive);
    } catch (error) {
      throw yaml.problemAt(at("keep_alive"), (error as Error).message);
    }
    let chatTemplate: ChatTemplateSetting;
    try {
      chatTemplate = chatTemplateOf(entry.chat_template ?? MODEL_DEFAULTS.chatTemplate, baseDir);
    } catch (error) {
      throw yaml.problemAt(at("chat_template"), (error as Error).message);
    }
    return normalizeEntry(name, entry, { keepAliveMs, chatTemplate }, baseDir);
  });
  const defaultModel = defaultModelOf(yaml, parsed, models);
  return {
    file: resolve(file),
    models,
    maxLoadedModels: parsed.max_loaded_models ?? MODEL_DEFAULTS.maxLoadedModels,
    memoryBudget: memoryBudgetOf(yaml, parsed),
    apiKeys: [...(parsed.api_keys ?? [])],
    ...(defaultModel !== undefined && { defaultModel }),
  };
}

/** `default_model` must name a model or alias of this file; without it, a file with exactly one model defaults to it. */
function defaultModelOf(yaml: YamlFile, parsed: ModelsFile, models: readonly ModelEntry[]): string | undefined {
  const wanted = parsed.default_model;
  if (wanted === undefined) return models.length === 1 ? models[0]!.name : undefined;
  const entry = models.find((m) => m.name === wanted || m.aliases.includes(wanted));
  if (!entry)
    throw yaml.problemAt(
      ["default_model"],
      `no model or alias is named ${JSON.stringify(wanted)}; models: ${models.map((m) => m.name).join(", ") || "(none)"}`,
    );
  return entry.name;
}

/** A parsed YAML document with line positions, and a way to report a problem at a key path. */
interface YamlFile {
  doc: Document;
  /** The document as plain data; `{}` for an empty file. */
  raw: unknown;
  problemAt(path: PathSegment[], problem: string, at?: "key" | "value"): ConfigError;
  locate(offset: number): { line: number; column: number };
}

function readYaml(text: string, file: string): YamlFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const locate = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const syntaxError = doc.errors[0];
  if (syntaxError) {
    // yaml's own wording for this one points at its API; say what to change in the file instead.
    const problem =
      syntaxError.code === "MULTIPLE_DOCS"
        ? 'more than one YAML document; a models file is one document, so remove this "---" and what follows'
        : firstLine(syntaxError.message);
    throw new ConfigError(file, `YAML syntax error: ${problem}`, locate(syntaxError.pos[0]));
  }
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (error) {
    throw new ConfigError(file, `cannot read YAML: ${(error as Error).message}`, { line: 1, column: 1 }, { cause: error });
  }
  // An empty file and a bare `models:` both mean "no models yet", which is a valid (if idle) server.
  if (raw === null || raw === undefined) raw = {};
  if (isPlainObject(raw) && raw.models === null) raw.models = {};
  const problemAt = (path: PathSegment[], problem: string, at: "key" | "value" = "value") =>
    new ConfigError(file, problem, { ...locate(offsetOf(doc, path, at)), key: path.length ? formatKeyPath(path) : undefined });
  return { doc, raw, problemAt, locate };
}

/** Model names and aliases are unique across the file: what a client asks for must mean one model. */
function checkNames(yaml: YamlFile, parsed: ModelsFile): void {
  const owners = new Map<string, { model: string; path: PathSegment[]; isAlias: boolean }>();
  for (const name of Object.keys(parsed.models ?? {})) owners.set(name, { model: name, path: ["models", name], isAlias: false });
  for (const [name, entry] of Object.entries(parsed.models ?? {})) {
    (entry.aliases ?? []).forEach((alias, index) => {
      const path = ["models", name, "aliases", index];
      const owner = owners.get(alias);
      if (owner) {
        const { line } = yaml.locate(offsetOf(yaml.doc, owner.path, owner.isAlias ? "value" : "key"));
        const clash =
          owner.model === name && !owner.isAlias
            ? "is this model's own name"
            : owner.isAlias
              ? `is already an alias of model "${owner.model}" (line ${line})`
              : `is already the name of model "${owner.model}" (line ${line})`;
        throw yaml.problemAt(path, `alias "${alias}" ${clash}; names and aliases must be unique across the file`);
      }
      owners.set(alias, { model: name, path, isAlias: true });
    });
  }
}

function memoryBudgetOf(yaml: YamlFile, parsed: ModelsFile): "auto" | number {
  if (parsed.memory_budget === undefined || parsed.memory_budget === "auto") return "auto";
  let budget: number;
  try {
    budget = parseByteSize(parsed.memory_budget);
  } catch (error) {
    throw yaml.problemAt(["memory_budget"], (error as Error).message);
  }
  if (budget === 0) throw yaml.problemAt(["memory_budget"], `expected a size greater than 0, got ${JSON.stringify(parsed.memory_budget)}`);
  return budget;
}

/** Reads and parses a models.yaml; an unreadable or missing file is a ConfigError naming it. */
export async function loadModelsFile(file: string): Promise<ModelRegistryConfig> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem =
      code === "ENOENT"
        ? `models file not found (looked for ${resolve(file)})`
        : code === "EISDIR"
          ? "is a directory, expected a models.yaml file"
          : `cannot read models file: ${(error as Error).message}`;
    throw new ConfigError(file, problem, {}, { cause: error });
  }
  return parseModelsYaml(text, file);
}

const wrapperNames = new Map(CHAT_TEMPLATE_NAMES.map((name) => [name.toLowerCase(), name]));

/**
 * `chat_template` as written: a wrapper name in any letter case, Jinja text (it has `{%` or `{{`), or else a file path
 * (relative to models.yaml) whose text is read now, so an unreadable file is an error at load time, not at first use.
 */
function chatTemplateOf(value: string, baseDir: string): ChatTemplateSetting {
  const name = wrapperNames.get(value.trim().toLowerCase());
  if (name === "auto") return { kind: "auto" };
  if (name) return { kind: "wrapper", name };
  if (value.includes("{%") || value.includes("{{")) return { kind: "jinja", template: value };
  const file = resolvePath(value.trim(), baseDir);
  let template: string;
  try {
    template = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? `no file at ${file}` : code === "EISDIR" ? `${file} is a folder` : (error as Error).message;
    throw new Error(
      `expected ${CHAT_TEMPLATE_RULE}; got ${JSON.stringify(value)}, which is not a wrapper name, not a Jinja template (no {% or {{), and ${why}`,
    );
  }
  if (!template.includes("{%") && !template.includes("{{"))
    throw new Error(`${file} does not look like a Jinja chat template (it has no {% or {{)`);
  return { kind: "jinja", template, file };
}

function normalizeEntry(
  name: string,
  entry: ModelFileEntry,
  parsed: { keepAliveMs: number; chatTemplate: ChatTemplateSetting },
  baseDir: string,
): ModelEntry {
  const normalized: ModelEntry = {
    name,
    source: resolveSource(entry.source, baseDir),
    aliases: [...(entry.aliases ?? [])],
    context: entry.context ?? MODEL_DEFAULTS.context,
    parallel: entry.parallel ?? MODEL_DEFAULTS.parallel,
    gpuLayers: entry.gpu_layers ?? MODEL_DEFAULTS.gpuLayers,
    chatTemplate: parsed.chatTemplate,
    keepAliveMs: parsed.keepAliveMs,
    maxQueue: entry.max_queue ?? MODEL_DEFAULTS.maxQueue,
    speculative: entry.speculative ?? MODEL_DEFAULTS.speculative,
    defaults: normalizeDefaults(entry.defaults ?? {}),
  };
  if (entry.threads !== undefined) normalized.threads = entry.threads;
  if (entry.use_mmap !== undefined) normalized.useMmap = entry.use_mmap;
  return normalized;
}

function normalizeDefaults(raw: SamplingDefaultsFile): SamplingDefaults {
  const names: Record<keyof SamplingDefaultsFile, keyof SamplingDefaults> = {
    temperature: "temperature",
    top_p: "topP",
    top_k: "topK",
    min_p: "minP",
    seed: "seed",
    max_tokens: "maxTokens",
    stop: "stop",
    repeat_penalty: "repeatPenalty",
    presence_penalty: "presencePenalty",
    frequency_penalty: "frequencyPenalty",
  };
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value !== undefined) out[names[key as keyof SamplingDefaultsFile]] = Array.isArray(value) ? [...value] : value;
  }
  return out as SamplingDefaults;
}

function resolveSource(source: string, baseDir: string): string {
  if (source.startsWith("synthetic:") || source.startsWith("hf:") || /^https?:\/\//i.test(source)) return source;
  return resolvePath(source, baseDir);
}

/** A path as written in models.yaml: relative to its folder, `~` for the home folder. */
function resolvePath(path: string, baseDir: string): string {
  // A shell would expand these; a yaml file does not, and a folder literally named "~" is never what was meant.
  if (path === "~") return homedir();
  if (path.startsWith("~/") || path.startsWith("~\\")) return join(homedir(), path.slice(2));
  return isAbsolute(path) ? resolve(path) : resolve(baseDir, path);
}

// ---------------------------------------------------------------------------------------------------------------
// Schema errors -> one readable problem with a place in the file

interface Problem {
  path: PathSegment[];
  problem: string;
  /** Whether the problem is the key itself (unknown, missing) or its value. */
  at: "key" | "value";
}

/** The schema problem that comes first in the file, so fixing errors top to bottom works. */
function firstSchemaError(doc: Document, raw: unknown): Problem | undefined {
  let best: { problem: Problem; offset: number } | undefined;
  for (const error of Value.Errors(ModelsFileSchema, raw)) {
    const problem = describeError(error, raw);
    const offset = offsetOf(doc, problem.path, problem.at);
    // Strictly earlier only: for one place, TypeBox's own order (structure before contents) is the better pick.
    if (!best || offset < best.offset) best = { problem, offset };
  }
  return best?.problem;
}

function describeError(error: ValueError, raw: unknown): Problem {
  const path = typedPath(raw, parsePointer(error.path));
  const schema = error.schema as TSchema;
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const key = String(path[path.length - 1]);
      if (schema.patternProperties)
        return { path, at: "key", problem: `invalid model name ${JSON.stringify(key)}; expected ${MODEL_NAME_RULE}` };
      const known = Object.keys(schema.properties ?? {}).filter((name) => name !== "$schema");
      const guess = closest(key, known);
      return {
        path,
        at: "key",
        problem: `unknown key; expected one of ${known.join(", ")}${guess ? ` (did you mean "${guess}"?)` : ""}`,
      };
    }
    case ValueErrorType.ObjectRequiredProperty: {
      const key = String(path[path.length - 1]);
      return { path: path.slice(0, -1), at: "key", problem: `missing required key "${key}"` };
    }
    default:
      return {
        path,
        at: "value",
        problem: `${expectation(schema, { object: "a mapping of keys to values" })}, got ${describeValue(error.value)}`,
      };
  }
}

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "an empty value";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/** Suggests a known key for a typo: the nearest by edit distance, if near enough to be a typo rather than a guess. */
function closest(key: string, known: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(key.toLowerCase(), name.toLowerCase());
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(1, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

// ---------------------------------------------------------------------------------------------------------------
// Key paths and source positions

function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** Turns pointer segments that index a list into numbers, so a model named "1" is not shown as a list index. */
function typedPath(raw: unknown, segments: string[]): PathSegment[] {
  let current = raw;
  return segments.map((segment) => {
    const list = Array.isArray(current);
    current = isPlainObject(current) || list ? (current as Record<string, unknown>)[segment] : undefined;
    return list ? Number(segment) : segment;
  });
}

/** `models.demo.aliases[0]`; keys that would read ambiguously (dots, spaces) are quoted: `models["llama3.1:8b"]`. */
export function formatKeyPath(path: readonly PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z0-9_$:/-]+$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/**
 * Source offset for a key path: the key itself (`at: "key"`) or its value. Walks as far as the path exists, so a
 * missing key points at its parent's key. Aliases are followed to their anchor, which is where the value is written.
 */
function offsetOf(doc: Document, path: readonly PathSegment[], at: "key" | "value"): number {
  let node: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: Pair | undefined;
    if (isMap(node)) {
      next = node.items.find((item) => keyText(item.key) === String(segment));
    } else if (isSeq(node)) {
      const item = node.items[Number(segment)];
      if (item === undefined) break;
      pair = undefined;
      node = item;
      continue;
    }
    if (!next) break;
    pair = next;
    node = next.value;
  }
  const keyNode = pair && isPair(pair) ? (pair.key as Node | null) : null;
  const valueNode = node as Node | null | undefined;
  // An empty value (`context:` and nothing after) sits at the end of the line; its key is the better place to show.
  const emptyValue = !valueNode?.range || valueNode.range[0] === valueNode.range[1];
  const preferred = at === "key" || emptyValue ? (keyNode ?? valueNode) : valueNode;
  return preferred?.range?.[0] ?? (doc.contents as Node | null)?.range?.[0] ?? 0;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.trim();
}
