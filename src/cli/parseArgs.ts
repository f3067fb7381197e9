/** Reads argv and the environment into a command and its settings: flags beat environment variables beat defaults. */
import { parseByteSize } from "../config/byteSize.ts";
import { parseDuration } from "../config/duration.ts";
import { defaultCacheDir, type Environment, hfEndpoint, hfToken } from "../config/environment.ts";
import { type LogFormat, logFormats } from "../server/LogWriter.ts";

export interface ServeSettings {
  host: string;
  port: number;
  /** Path of models.yaml, when given by flag or env; otherwise the CLI looks for one. */
  models?: string;
  plugins?: string;
  threads?: number;
  /** Generated and downloaded models, the unpacked runtime. */
  cacheDir: string;
  /** Base URL for `hf:` sources. */
  hfEndpoint: string;
  /** Hugging Face token for gated models (HF_TOKEN, or the token file huggingface-cli writes). */
  hfToken?: string;
  /** API keys clients must send (more may come from the key file and models.yaml). */
  apiKeys: string[];
  /** A file of API keys, one per line. */
  apiKeyFile?: string;
  /** Host names accepted in the Host header besides the local ones. */
  allowedHosts: string[];
  /** Browser origins allowed to call the server besides the local ones. */
  allowedOrigins: string[];
  maxBodyBytes?: number;
  /** How long running requests may take to finish when the server is asked to stop. */
  shutdownTimeoutMs: number;
  idleTimeoutSeconds?: number;
  maxRequests?: number;
  /** Log lines as text (coloured on a terminal) or one JSON object per line. */
  logFormat: LogFormat;
  /** `GET /metrics` needs no API key. */
  publicMetrics: boolean;
  /** Where `/api/pull` may fetch new models from; default: anywhere on a loopback address, else the hub only. */
  pullFrom?: PullFrom;
}

const pullFromValues = ["anywhere", "hub"] as const;
type PullFrom = (typeof pullFromValues)[number];

/** What the commands other than `serve` take; settings come from flags and the environment as for `serve`. */
export type Command =
  | { kind: "serve"; settings: ServeSettings }
  | { kind: "pull"; source: string; name?: string; settings: ServeSettings }
  | { kind: "run"; model: string; prompt?: string; verbose: boolean; settings: ServeSettings }
  | { kind: "list"; settings: ServeSettings }
  | { kind: "ps"; settings: ServeSettings }
  | { kind: "show"; model: string; settings: ServeSettings }
  | { kind: "init"; dir?: string; force: boolean }
  | { kind: "help"; command?: CommandName }
  | { kind: "version" };

export type CommandName = "serve" | "pull" | "run" | "list" | "ps" | "show" | "init";

export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose usage to print with the message. */
    readonly command?: CommandName,
  ) {
    super(message);
  }
}

const serveOptions = `Options (environment variable in brackets; flags win):
  --host H                 address to listen on [LLAMAPORT_HOST] (default 127.0.0.1)
  --port P                 port to listen on [LLAMAPORT_PORT] (default 9112; 0 = any free port)
  --models FILE            the model registry [LLAMAPORT_MODELS] (default ./models.yaml, else the one beside the
                           executable, else a built-in registry with the offline demo model)
  --plugins DIR            protocol plugins folder [LLAMAPORT_PLUGINS] (default plugins/ beside models.yaml)
  --threads N              most CPU threads for models that do not set their own [LLAMAPORT_THREADS] (default:
                           the physical cores; models under 64 MB use 1; fewer while other programs keep cores busy)

Access (every route but /health needs a key once any key is set):
  --api-key KEY            an API key clients must send as "Authorization: Bearer KEY" or "x-api-key: KEY";
                           repeat or separate with commas for several [LLAMAPORT_API_KEY] (prefer the variable or
                           the key file: other users on this machine can see command lines)
  --api-key-file FILE      a file of API keys, one per line, # for comments [LLAMAPORT_API_KEY_FILE]
                           (api_keys in models.yaml adds more)
  --allowed-hosts LIST     host names the server answers to besides localhost, *.localhost, this machine's name
                           and IP addresses, comma-separated; * = any [LLAMAPORT_ALLOWED_HOSTS] (checked when
                           listening on a loopback address, or whenever set: it stops DNS-rebinding web pages)
  --allowed-origins LIST   web page origins that may call the server besides localhost pages, comma-separated,
                           * as a wildcard, e.g. https://*.example.com [LLAMAPORT_ALLOWED_ORIGINS]
  --pull-from WHERE        where clients' POST /api/pull may download new models from: anywhere (any http(s)
                           URL) or hub (Hugging Face: hf: sources, hf.co/ names) [LLAMAPORT_PULL_FROM] (default:
                           anywhere when listening on a loopback address, else hub)

Limits:
  --max-body-size SIZE     largest request body, e.g. 10MiB [LLAMAPORT_MAX_BODY_SIZE] (default 10MiB)
  --max-requests N         requests in flight at once; more get 503 [LLAMAPORT_MAX_REQUESTS] (default: half
                           the open-file limit, at most 4096)
  --idle-timeout T         close a connection quiet for this long, e.g. 30s, at most 255s; requests being
                           answered are exempt [LLAMAPORT_IDLE_TIMEOUT] (default 30s)
  --shutdown-timeout T     on SIGTERM/SIGINT, how long running requests may take to finish before they are
                           ended, e.g. 10s [LLAMAPORT_SHUTDOWN_TIMEOUT] (default 10s); a second signal stops at once

Logs and metrics:
  --log-format F           text (coloured on a terminal) or json: one object per line [LLAMAPORT_LOG_FORMAT]
                           (default text); every request is one line with its id, route, model, status, tokens,
                           time to first token, tokens/s and duration
  --public-metrics         GET /metrics needs no API key, like /health, for scrapers that send none
                           (Prometheus, an inference gateway's endpoint picker) [LLAMAPORT_PUBLIC_METRICS] (1 or 0)`;

const environment = `Environment:
  LLAMAPORT_CACHE          cache folder for generated and downloaded models and the unpacked engine
                           (default $XDG_CACHE_HOME/llamaport, else ~/.cache/llamaport)
  LLAMAPORT_HF_ENDPOINT    where hf: model sources are downloaded from (default https://huggingface.co)
  HF_TOKEN                 Hugging Face token for gated and private models, sent to that endpoint only; without it
                           the file $HF_TOKEN_PATH, else $HF_HOME/token (default ~/.cache/huggingface/token, where
                           \`huggingface-cli login\` keeps it)
  XDG_CACHE_HOME           see LLAMAPORT_CACHE
  The LLAMAPORT_* variables of the options above.`;

const sources = `Sources: hf:<owner>/<repo>:<quant> (the file picked as node-llama-cpp picks it; without :<quant>, Q4_K_M),
  Ollama's hf.co/<owner>/<repo>:<quant>, hf:<owner>/<repo>/<file>.gguf, or an http(s):// URL of a GGUF file.`;

const server = `  --host H, --port P       the server to ask [LLAMAPORT_HOST, LLAMAPORT_PORT] (default 127.0.0.1:9112)
  --api-key KEY            the key to send, when the server wants one [LLAMAPORT_API_KEY] (the first of several)`;

const registry = `  --models FILE            the model registry [LLAMAPORT_MODELS] (default ./models.yaml, else the one beside the
                           executable, else the built-in one)`;

export const usage = `llamaport: a local LLM server (OpenAI, Ollama and Anthropic APIs) in one executable

Usage:
  llamaport serve [options]          run the server (the default command)
  llamaport pull SOURCE [--name N]   download a model into the cache and add it to models.yaml
  llamaport run MODEL [PROMPT]       answer PROMPT, or chat (Ctrl-C stops an answer, Ctrl-D leaves)
  llamaport list                     the models of models.yaml: size, quantization, parameters, loaded or not
  llamaport ps                       the models a running server has loaded
  llamaport show MODEL               a model's GGUF facts, capabilities, chat template and defaults
  llamaport init [DIR]               write models.yaml, models.schema.json and plugins/ (editor types, an example)
  llamaport help [COMMAND]           this text, or a command's (also: llamaport COMMAND --help)
  llamaport --version

${sources}

${serveOptions}

${environment}
`;

/** Each command's own help. */
export const commandUsage: Record<CommandName, string> = {
  serve: `Usage: llamaport serve [options]

Runs the server. Edits to models.yaml and to files in plugins/ apply while it runs.

${serveOptions}

${environment}
`,
  pull: `Usage: llamaport pull SOURCE [--name N]

Downloads a model into the cache (resuming a download that was cut), checks it (a GGUF whose tensors are all there,
with the SHA-256 the hub announces), and adds it to models.yaml, keeping the file's comments and order. A running
server picks the new entry up. SOURCE may also be the name of a model in models.yaml whose file is not there yet.
Without a models.yaml one is written (as \`llamaport init\` writes it) where \`serve\` looks for it.

${sources}

  --name N                 the model's name in models.yaml (default: the file's name without .gguf)
${registry}

${environment}
`,
  run: `Usage: llamaport run MODEL [PROMPT]

With PROMPT (or text piped in), prints the answer as it is generated. Without, chats: each line you enter is sent
with the conversation so far; Ctrl-C stops an answer, Ctrl-D (or /bye) leaves. MODEL is a name in models.yaml, or a
source (see below) that is pulled first. Talks to the server at --host and --port when one runs there (as Ollama's
CLI does), else loads the model in this process.

${sources}

  --verbose                after each answer: prompt tokens (and how many were cached), answer tokens, speed
${server}
${registry}
  --threads N              CPU threads when the model runs in this process [LLAMAPORT_THREADS]
`,
  list: `Usage: llamaport list

The models of models.yaml: name, size on disk, quantization, parameters, context, and whether the server at --host
and --port has it loaded.

${server}
${registry}
`,
  ps: `Usage: llamaport ps

The models the server at --host and --port has loaded: size, context, and until when it keeps them.

${server}
`,
  show: `Usage: llamaport show MODEL

A model's facts from its GGUF header (architecture, parameters, quantization, context), its capabilities, sampling
defaults and chat template.

${registry}
`,
  init: `Usage: llamaport init [DIR] [--force]

Writes a commented models.yaml, models.schema.json (editors validate models.yaml with it) and plugins/ with
llamaport.d.ts (editor types for plugins) and an example plugin into DIR (default: the current folder). Files that
exist are kept unless --force.
`,
};

/** Flag name (without --) to its environment variable. */
export const flags: Readonly<Record<string, string>> = {
  host: "LLAMAPORT_HOST",
  port: "LLAMAPORT_PORT",
  models: "LLAMAPORT_MODELS",
  plugins: "LLAMAPORT_PLUGINS",
  threads: "LLAMAPORT_THREADS",
  "api-key": "LLAMAPORT_API_KEY",
  "api-key-file": "LLAMAPORT_API_KEY_FILE",
  "allowed-hosts": "LLAMAPORT_ALLOWED_HOSTS",
  "allowed-origins": "LLAMAPORT_ALLOWED_ORIGINS",
  "max-body-size": "LLAMAPORT_MAX_BODY_SIZE",
  "max-requests": "LLAMAPORT_MAX_REQUESTS",
  "idle-timeout": "LLAMAPORT_IDLE_TIMEOUT",
  "shutdown-timeout": "LLAMAPORT_SHUTDOWN_TIMEOUT",
  "log-format": "LLAMAPORT_LOG_FORMAT",
  "public-metrics": "LLAMAPORT_PUBLIC_METRICS",
  "pull-from": "LLAMAPORT_PULL_FROM",
};

/** Flags that may be given several times; their values add up. */
const repeatable = new Set(["api-key", "allowed-hosts", "allowed-origins"]);

/** What each command takes: its flags (with a value, or `boolean`) and how many positional arguments. */
const commandSpecs: Record<CommandName, { flags: string[]; booleans?: string[]; positional: [min: number, max: number] }> = {
  serve: { flags: Object.keys(flags).filter((name) => name !== "public-metrics"), booleans: ["public-metrics"], positional: [0, 0] },
  pull: { flags: ["models", "name"], positional: [1, 1] },
  run: { flags: ["host", "port", "models", "threads", "api-key"], booleans: ["verbose"], positional: [1, Number.POSITIVE_INFINITY] },
  list: { flags: ["host", "port", "models", "api-key"], positional: [0, 0] },
  ps: { flags: ["host", "port", "api-key"], positional: [0, 0] },
  show: { flags: ["models"], positional: [1, 1] },
  init: { flags: [], booleans: ["force"], positional: [0, 1] },
};

const isCommand = (name: string | undefined): name is CommandName => name !== undefined && Object.hasOwn(commandSpecs, name);

export function parseArgs(argv: string[], env: Environment): Command {
  const args = argv.slice();
  if (args[0] === "help" || args[0] === "--help" || args[0] === "-h") {
    const topic = args[1];
    if (topic !== undefined && !isCommand(topic)) throw new UsageError(`unknown command "${topic}"`);
    return { kind: "help", command: topic };
  }
  if (args.includes("--version") || args.includes("-v") || args[0] === "version") return { kind: "version" };
  let command: CommandName = "serve";
  if (isCommand(args[0])) command = args.shift() as CommandName;
  else if (args[0] !== undefined && !args[0].startsWith("-")) throw new UsageError(`unknown command "${args[0]}"`);
  if (args.includes("--help") || args.includes("-h")) return { kind: "help", command: argv[0] === command ? command : undefined };

  const spec = commandSpecs[command];
  const given: Record<string, string> = {};
  const positional: string[] = [];
  while (args.length > 0) {
    const arg = args.shift()!;
    if (!arg.startsWith("--") || arg === "--") {
      if (arg === "--") positional.push(...args.splice(0));
      else positional.push(arg);
      continue;
    }
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const name = flag.slice(2);
    if (spec.booleans?.includes(name)) {
      given[name] = inline ?? "true";
      continue;
    }
    if (!spec.flags.includes(name))
      throw new UsageError(`unknown option "${flag}"${command === "serve" ? "" : ` for ${command}`}`, command);
    const value = inline ?? args.shift();
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value`, command);
    given[name] = given[name] !== undefined && repeatable.has(name) ? `${given[name]},${value}` : value;
  }
  const [min, max] = spec.positional;
  if (positional.length < min) throw new UsageError(`${command} needs ${command === "pull" ? "a SOURCE" : "a MODEL"}`, command);
  if (positional.length > max) throw new UsageError(`unexpected argument "${positional[max]}"`, command);

  if (command === "init") return { kind: "init", dir: positional[0], force: given.force === "true" };
  const settings = serveSettings(given, env, command);
  switch (command) {
    case "serve":
      return { kind: "serve", settings };
    case "pull":
      return { kind: "pull", source: positional[0]!, name: given.name, settings };
    case "run":
      return {
        kind: "run",
        model: positional[0]!,
        prompt: positional.length > 1 ? positional.slice(1).join(" ") : undefined,
        verbose: given.verbose === "true",
        settings,
      };
    case "show":
      return { kind: "show", model: positional[0]!, settings };
    default:
      return { kind: command, settings };
  }
}

/** Settings from flags, then the environment (only the variables of flags the command takes), then defaults. */
function serveSettings(given: Record<string, string>, env: Environment, command: CommandName): ServeSettings {
  const accepted = commandSpecs[command].flags;
  const pick = (name: string) => given[name] ?? (accepted.includes(name) ? env[flags[name]!] || undefined : undefined);
  const list = (name: string) =>
    (pick(name) ?? "")
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean);
  const logFormat = pick("log-format") ?? "text";
  if (!logFormats.includes(logFormat as LogFormat))
    throw new UsageError(`--log-format must be one of ${logFormats.join(", ")}, got "${logFormat}"`, command);
  const threadsText = pick("threads");
  const maxBody = pick("max-body-size");
  const maxRequests = pick("max-requests");
  const idle = pick("idle-timeout");
  const pullFrom = pick("pull-from");
  if (pullFrom !== undefined && !pullFromValues.includes(pullFrom as PullFrom))
    throw new UsageError(`--pull-from must be one of ${pullFromValues.join(", ")}, got "${pullFrom}"`, command);
  return {
    host: pick("host") ?? "127.0.0.1",
    port: toInt(pick("port") ?? "9112", "port", 0, 65535),
    models: pick("models"),
    plugins: pick("plugins"),
    threads: threadsText === undefined ? undefined : toInt(threadsText, "threads", 1, 1024),
    cacheDir: defaultCacheDir(env),
    hfEndpoint: hfEndpoint(env),
    hfToken: hfToken(env),
    apiKeys: list("api-key"),
    apiKeyFile: pick("api-key-file"),
    allowedHosts: list("allowed-hosts"),
    allowedOrigins: list("allowed-origins"),
    maxBodyBytes: maxBody === undefined ? undefined : toByteSize(maxBody, "max-body-size"),
    maxRequests: maxRequests === undefined ? undefined : toInt(maxRequests, "max-requests", 1, 1_000_000),
    idleTimeoutSeconds: idle === undefined ? undefined : toSeconds(idle, "idle-timeout", 1, 255),
    shutdownTimeoutMs: toSeconds(pick("shutdown-timeout") ?? "10s", "shutdown-timeout", 0, 3600) * 1000,
    logFormat: logFormat as LogFormat,
    pullFrom: pullFrom as PullFrom | undefined,
    publicMetrics: toSwitch(
      given["public-metrics"] ?? (command === "serve" ? env[flags["public-metrics"]!] : undefined) ?? "false",
      "public-metrics",
    ),
  };
}

function toSwitch(text: string, name: string): boolean {
  const value = text.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new UsageError(`--${name} is on or off (${flags[name]}=1 or 0), got "${text}"`);
}

function toInt(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  return value;
}

function toByteSize(text: string, name: string): number {
  let bytes: number;
  try {
    bytes = parseByteSize(text);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
  if (bytes < 1) throw new UsageError(`--${name} must be at least 1 byte, got "${text}"`);
  return Math.floor(bytes);
}

/** A duration ("30s", "2m", or a number of seconds) in whole seconds within bounds. */
function toSeconds(text: string, name: string, min: number, max: number): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`);
  }
  const seconds = ms / 1000;
  if (ms < 0 || seconds < min || seconds > max) throw new UsageError(`--${name} must be from ${min} to ${max} seconds, got "${text}"`);
  return seconds;
}
