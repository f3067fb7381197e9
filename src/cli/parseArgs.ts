/** Reads argv and the environment into server settings: flags beat environment variables beat defaults. */
import { defaultCacheDir, type Environment, hfEndpoint } from "../config/environment.ts";

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
}

export type Command = { kind: "serve"; settings: ServeSettings } | { kind: "help" } | { kind: "version" };

export class UsageError extends Error {}

export const usage = `llamaport: a local LLM server (OpenAI, Ollama and Anthropic APIs) in one executable

Usage:
  llamaport serve [--host H] [--port P] [--models FILE] [--plugins DIR] [--threads N]
  llamaport --help
  llamaport --version

Options (environment variable in brackets; flags win):
  --host H        address to listen on [LLAMAPORT_HOST] (default 127.0.0.1)
  --port P        port to listen on [LLAMAPORT_PORT] (default 9112; 0 = any free port)
  --models FILE   the model registry [LLAMAPORT_MODELS] (default ./models.yaml, else the one beside the
                  executable, else a built-in registry with the offline demo model)
  --plugins DIR   protocol plugins folder [LLAMAPORT_PLUGINS] (default plugins/ beside models.yaml)
  --threads N     CPU threads for models that do not set their own [LLAMAPORT_THREADS] (default: the
                  physical cores; models under 64 MB use 1)

Environment:
  LLAMAPORT_CACHE        cache folder for generated and downloaded models and the unpacked engine
                         (default $XDG_CACHE_HOME/llamaport, else ~/.cache/llamaport)
  LLAMAPORT_HF_ENDPOINT  where hf: model sources are downloaded from (default https://huggingface.co)
`;

const flags = new Set(["--host", "--port", "--models", "--plugins", "--threads"]);

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
    if (!flags.has(flag)) throw new UsageError(`unknown option "${arg}"`);
    const value = inline ?? args.shift();
    if (value === undefined || value === "") throw new UsageError(`${flag} needs a value`);
    given[flag.slice(2)] = value;
  }

  const pick = (name: string, envName: string) => given[name] ?? (env[envName] || undefined);
  const port = toInt(pick("port", "LLAMAPORT_PORT") ?? "9112", "port", 0, 65535);
  const threadsText = pick("threads", "LLAMAPORT_THREADS");
  return {
    kind: "serve",
    settings: {
      host: pick("host", "LLAMAPORT_HOST") ?? "127.0.0.1",
      port,
      models: pick("models", "LLAMAPORT_MODELS"),
      plugins: pick("plugins", "LLAMAPORT_PLUGINS"),
      threads: threadsText === undefined ? undefined : toInt(threadsText, "threads", 1, 1024),
      cacheDir: defaultCacheDir(env),
      hfEndpoint: hfEndpoint(env),
    },
  };
}

function toInt(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${text}"`);
  return value;
}
