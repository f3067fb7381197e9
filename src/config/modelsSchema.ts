// The models.yaml schema, written once: validates the loaded file and is exported as models.schema.json for editors.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { BYTE_SIZE_PATTERN } from "./byteSize.ts";
import { DURATION_PATTERN } from "./duration.ts";

/** Model names and aliases: what clients put in `model`, so no spaces and nothing that needs URL-escaping in Ollama paths. */
export const MODEL_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:/-]*$";
export const MODEL_NAME_RULE = "a name starting with a letter or digit and using only letters, digits and . _ : / -";

/**
 * node-llama-cpp 3.21.1's chat wrapper names (written as its docs write them; matched case-insensitively), hard-coded
 * so the config layer does not load the native module. "jinjaTemplate" runs the GGUF's own Jinja template as it is.
 */
export const CHAT_TEMPLATE_NAMES = [
  "auto",
  "general",
  "deepSeek",
  "qwen",
  "llama3.2-lightweight",
  "llama3.1",
  "llama3",
  "llama2Chat",
  "mistral",
  "alpacaChat",
  "functionary",
  "chatML",
  "falconChat",
  "gemma4",
  "gemma",
  "harmony",
  "muse",
  "seed",
  "jinjaTemplate",
] as const;

/** What `chat_template` takes, in words; the loader's error messages and editors show the same text. */
export const CHAT_TEMPLATE_RULE = `"auto", a node-llama-cpp chat wrapper name (${CHAT_TEMPLATE_NAMES.filter((n) => n !== "auto").join(", ")}; any letter case), a Jinja template, or the path of a file holding one`;

/** Values the loader fills in for keys a file leaves out; also shown as `default` in editors. */
export const MODEL_DEFAULTS = {
  maxLoadedModels: 3,
  memoryBudget: "auto",
  context: 4096,
  parallel: 4,
  gpuLayers: "auto",
  chatTemplate: "auto",
  keepAlive: "5m",
  maxQueue: 512,
  speculative: "auto",
} as const;

/**
 * Bounds on stop strings, for requests and for `defaults.stop`: matching is linear in the text, but each stop string
 * is checked against every generated character and a partial match is held back, so neither may grow without limit.
 * OpenAI allows 4 stop strings; Ollama and Anthropic set no limit, and clients rarely send more than a handful.
 */
export const STOP_LIMITS = { count: 16, length: 1000 } as const;

// `errorMessage` is not JSON Schema, but yaml-language-server shows it in place of its own generic message,
// and the loader uses it for the same purpose, so a pattern failure reads the same in the editor and in the server.

const Duration = Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Number()], {
  description:
    'How long the model stays loaded after its last request, as in Ollama: "5m", "1h30m", "30s", "0" (unload right away), a number of seconds, or a negative value to never unload.',
  default: MODEL_DEFAULTS.keepAlive,
  errorMessage: 'expected a duration such as "5m", "1h30m", "30s", "0", a number of seconds, or a negative number for "never"',
});

const GpuLayers = Type.Union([Type.Literal("auto"), Type.Literal("max"), Type.Integer({ minimum: 0 })], {
  description:
    'Model layers to offload to the GPU: "auto" (fit what the free VRAM allows), "max" (all of them) or a count; 0 keeps the model on the CPU.',
  default: MODEL_DEFAULTS.gpuLayers,
  errorMessage: 'expected "auto", "max" or an integer >= 0',
});

// The names are listed for editors' completion; any other string is a Jinja template or a file, which the loader checks.
const ChatTemplate = Type.Union([...CHAT_TEMPLATE_NAMES.map((name) => Type.Literal(name)), Type.String({ minLength: 1 })], {
  description:
    'How chat messages become a prompt: "auto" uses the template inside the GGUF, or ChatML when it has none (as llama-server does); a node-llama-cpp chat wrapper name (any letter case); a Jinja template (text with {% or {{, as in a GGUF or a Hugging Face tokenizer_config.json); or the path of a file holding one (relative to this file).',
  default: MODEL_DEFAULTS.chatTemplate,
  errorMessage: `expected ${CHAT_TEMPLATE_RULE}`,
});

const ModelName = (description: string) =>
  Type.String({ pattern: MODEL_NAME_PATTERN, description, errorMessage: `expected ${MODEL_NAME_RULE}` });

export const SamplingDefaultsSchema = Type.Object(
  {
    temperature: Type.Optional(Type.Number({ minimum: 0, description: "Sampling temperature; 0 picks the most likely token every time." })),
    top_p: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 1,
        description: "Nucleus sampling: keep the smallest set of tokens whose probabilities add up to this.",
      }),
    ),
    top_k: Type.Optional(Type.Integer({ minimum: 0, description: "Keep only the k most likely tokens; 0 turns this filter off." })),
    min_p: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: "Drop tokens less likely than this fraction of the most likely one." }),
    ),
    seed: Type.Optional(Type.Integer({ description: "Random seed, for repeatable output." })),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1, description: "Most tokens to generate when a request does not say." })),
    stop: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: STOP_LIMITS.length }), {
        maxItems: STOP_LIMITS.count,
        description: `Strings that end generation when produced; not included in the output (at most ${STOP_LIMITS.count}, each up to ${STOP_LIMITS.length} characters).`,
      }),
    ),
    repeat_penalty: Type.Optional(Type.Number({ minimum: 0, description: "Penalty for repeating recent tokens; 1 means none." })),
    presence_penalty: Type.Optional(Type.Number({ description: "Penalty for tokens that already appeared at all; 0 means none." })),
    frequency_penalty: Type.Optional(
      Type.Number({ description: "Penalty growing with how often a token already appeared; 0 means none." }),
    ),
  },
  {
    additionalProperties: false,
    description: "Sampling settings used when a request leaves them out. Every key is optional.",
  },
);

export const ModelEntrySchema = Type.Object(
  {
    source: Type.String({
      minLength: 1,
      description:
        'Where the GGUF comes from: a file path (relative to this file\'s folder, or absolute), "synthetic:<preset>" for a generated test model, an http(s):// URL, or "hf:<owner>/<repo>/<file.gguf>" (downloaded once into the cache).',
    }),
    aliases: Type.Optional(
      Type.Array(ModelName("Another name clients may use for this model."), {
        description: "Other names clients may use for this model, e.g. the name an existing client is hard-wired to.",
      }),
    ),
    context: Type.Optional(
      Type.Integer({ minimum: 1, default: MODEL_DEFAULTS.context, description: "Context size in tokens for each sequence." }),
    ),
    parallel: Type.Optional(
      Type.Integer({
        minimum: 1,
        default: MODEL_DEFAULTS.parallel,
        description: "Sequences decoded together: how many requests run at once.",
      }),
    ),
    threads: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          "CPU threads for every decode step, fixed. Leave out to let the engine decide: 1 for models under 64 MB, else up to the physical cores (or --threads), fewer while other programs keep cores busy.",
      }),
    ),
    speculative: Type.Optional(
      Type.Union([Type.Literal("auto"), Type.Literal("on"), Type.Literal("off")], {
        description:
          'Prompt-lookup speculative decoding: predict the next tokens from the prompt (text the model repeats, code it edits) and check several in one step. "auto" on models of 64 MB and up, while the request is alone on the model and drafts measurably give tokens faster than single steps; "on" always; "off" never. Requests with repeat, presence, frequency or DRY penalties never speculate.',
        default: MODEL_DEFAULTS.speculative,
        errorMessage: 'expected "auto", "on" or "off"',
      }),
    ),
    gpu_layers: Type.Optional(GpuLayers),
    chat_template: Type.Optional(ChatTemplate),
    keep_alive: Type.Optional(Duration),
    max_queue: Type.Optional(
      Type.Integer({
        minimum: 0,
        default: MODEL_DEFAULTS.maxQueue,
        description: "Requests that may wait once every sequence is busy; more are refused with a retryable error.",
      }),
    ),
    use_mmap: Type.Optional(
      Type.Boolean({
        description:
          "Map the weights from the file (default where supported: fast loads, shared pages) or read them into memory (false). Without mmap, replacing the file while the model is loaded cannot crash the server.",
      }),
    ),
    defaults: Type.Optional(SamplingDefaultsSchema),
  },
  { additionalProperties: false, description: "One model the server offers." },
);

export const ModelsFileSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({ description: "The JSON schema for this file, for editors that read it from a key rather than a comment." }),
    ),
    max_loaded_models: Type.Optional(
      Type.Integer({
        minimum: 1,
        default: MODEL_DEFAULTS.maxLoadedModels,
        description: "Models kept loaded at once; loading one more unloads the one idle the longest.",
      }),
    ),
    memory_budget: Type.Optional(
      Type.Union([Type.Literal("auto"), Type.String({ pattern: BYTE_SIZE_PATTERN }), Type.Integer({ minimum: 1 })], {
        description:
          'Memory the loaded models may use together: "auto" (the free RAM when a model loads), a size like "8GiB" or "512MB", or a number of bytes.',
        default: MODEL_DEFAULTS.memoryBudget,
        errorMessage: 'expected "auto", a size such as "8GiB", "512MB", "1.5G", or a number of bytes',
      }),
    ),
    api_keys: Type.Optional(
      Type.Array(Type.String({ pattern: "^\\S+$", errorMessage: "expected a key: one or more characters, no spaces" }), {
        description:
          "API keys clients must send (`Authorization: Bearer <key>` or `x-api-key`), added to those given by --api-key, LLAMAPORT_API_KEY or --api-key-file. With none, no key is needed.",
      }),
    ),
    default_model: Type.Optional(
      ModelName(
        "The model (name or alias) for requests that name none, as llama-server's clients send (llama-server serves one model). Default: the only model, when there is exactly one.",
      ),
    ),
    models: Type.Optional(
      Type.Record(Type.String({ pattern: MODEL_NAME_PATTERN }), ModelEntrySchema, {
        additionalProperties: false,
        description: "The models the server offers, by the name clients ask for.",
      }),
    ),
  },
  {
    additionalProperties: false,
    description: "llamaport's model registry: which models the server offers and how they are loaded.",
  },
);

/** models.yaml as written, before defaults are filled in. */
export type ModelsFile = Static<typeof ModelsFileSchema>;
export type ModelFileEntry = Static<typeof ModelEntrySchema>;
export type SamplingDefaultsFile = Static<typeof SamplingDefaultsSchema>;

/** The schema as plain draft-07 JSON, exactly what scripts/generateSchema.ts writes to models.schema.json. */
export function buildJsonSchema(): Record<string, unknown> {
  // Round-tripping through JSON drops TypeBox's symbol-keyed bookkeeping, leaving only JSON Schema.
  const plain = JSON.parse(JSON.stringify(ModelsFileSchema as TSchema)) as Record<string, unknown>;
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "llamaport models.yaml",
    ...plain,
  };
}
