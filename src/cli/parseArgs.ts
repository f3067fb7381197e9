/** Reads argv and the environment into server settings: flags beat environment variables beat defaults. */
import { parseByteSize } from "../config/byteSize.ts";
import { parseDuration } from "../config/duration.ts";
import { defaultCacheDir, type Environment, hfEndpoint } from "../config/environment.ts";
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
}

export type Command = { kind: "serve"; settings: ServeSettings } | { kind: "help" } | { kind: "version" };

export class UsageError extends Error {}

export const usage = `llamaport: a local LLM server (OpenAI, Ollama and Anthropic APIs) in one executable

Usage:
  llamaport serve [options]
  llamaport --help
  llamaport --version

Options (environment variable in brackets; flags win):
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
                           (Prometheus, an inference gateway's endpoint picker) [LLAMAPORT_PUBLIC_METRICS] (1 or 0)

Environment:
  LLAMAPORT_CACHE          cache folder for generated and downloaded models and the unpacked engine
                           (default $XDG_CACHE_HOME/llamaport, else ~/.cache/llamaport)
  LLAMAPORT_HF_ENDPOINT    where hf: model sources are downloaded from (default https://huggingface.co)
`;

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
};

/** Flags that take no value: given means on. Their variables take 1/true/yes or 0/false/no. */
const switches = new Set(["public-metrics"]);

/** Flags that may be given several times; their values add up. */
const repeatable = new Set(["api-key", "allowed-hosts", "allowed-origins"]);

export function parseArgs(argv: string[], env: Environment): Command {
  const args = argv.slice();
  if (args.includes("--help") || args.includes("-h") || args[0] === "help") return { kind: "help" };
  if (args.includes("--version") || args.includes("-v") || args[0] === "version") return { kind: "version" };
  if (args[0] === "serve") args.shift();
  else if (args[0] !== undefined && !args[0].startsWith("-")) throw new UsageError(`unknown command "${args[0]}"`);

  const given: Record<string, string> = {};
  while (args.length > 0) {
    const arg = args.shift()!;
    const [flag, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const name = flag.slice(2);
    if (!flag.startsWith("--") || !(name in flags)) throw new UsageError(`unknown option "${flag}"`);
    if (switches.has(name) && inline === undefined) {
      given[name] = "true";
      continue;
    }
    const value = inline ?? args.shift();
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value`);
    given[name] = given[name] !== undefined && repeatable.has(name) ? `${given[name]},${value}` : value;
  }

  const pick = (name: string) => given[name] ?? (env[flags[name]!] || undefined);
  const list = (name: string) =>
    (pick(name) ?? "")
      .split(",")
      .map((item) => item.trim())
      .filter(Boolean);
  const threadsText = pick("threads");
  const maxBody = pick("max-body-size");
  const maxRequests = pick("max-requests");
  const idle = pick("idle-timeout");
  const logFormat = pick("log-format") ?? "text";
  if (!logFormats.includes(logFormat as LogFormat))
    throw new UsageError(`--log-format must be one of ${logFormats.join(", ")}, got "${logFormat}"`);
  return {
    kind: "serve",
    settings: {
      host: pick("host") ?? "127.0.0.1",
      port: toInt(pick("port") ?? "9112", "port", 0, 65535),
      models: pick("models"),
      plugins: pick("plugins"),
      threads: threadsText === undefined ? undefined : toInt(threadsText, "threads", 1, 1024),
      cacheDir: defaultCacheDir(env),
      hfEndpoint: hfEndpoint(env),
      apiKeys: list("api-key"),
      apiKeyFile: pick("api-key-file"),
      allowedHosts: list("allowed-hosts"),
      allowedOrigins: list("allowed-origins"),
      maxBodyBytes: maxBody === undefined ? undefined : toByteSize(maxBody, "max-body-size"),
      maxRequests: maxRequests === undefined ? undefined : toInt(maxRequests, "max-requests", 1, 1_000_000),
      idleTimeoutSeconds: idle === undefined ? undefined : toSeconds(idle, "idle-timeout", 1, 255),
      shutdownTimeoutMs: toSeconds(pick("shutdown-timeout") ?? "10s", "shutdown-timeout", 0, 3600) * 1000,
      logFormat: logFormat as LogFormat,
      publicMetrics: toSwitch(pick("public-metrics") ?? "false", "public-metrics"),
    },
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
