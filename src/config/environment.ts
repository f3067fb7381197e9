/**
 * The environment variables llamaport reads besides the CLI's own flags, in one place: callers pass `process.env` in,
 * everything below them gets plain values.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export type Environment = Record<string, string | undefined>;

/** Where generated and downloaded models and the unpacked runtime go: $LLAMAPORT_CACHE, else $XDG_CACHE_HOME/llamaport, else ~/.cache/llamaport. */
export function defaultCacheDir(env: Environment): string {
  if (env.LLAMAPORT_CACHE) return env.LLAMAPORT_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "llamaport");
  return join(homedir(), ".cache", "llamaport");
}

/** Base URL for `hf:` model sources: $LLAMAPORT_HF_ENDPOINT (a mirror, or a test server), else the public hub. */
export function hfEndpoint(env: Environment): string {
  return (env.LLAMAPORT_HF_ENDPOINT || "https://huggingface.co").replace(/\/$/, "");
}

/**
 * The Hugging Face token for gated and private models: $HF_TOKEN, else the file `huggingface-cli login` writes
 * ($HF_TOKEN_PATH, else $HF_HOME/token, else ~/.cache/huggingface/token), as Hugging Face's own tools read it.
 */
export function hfToken(env: Environment): string | undefined {
  if (env.HF_TOKEN) return env.HF_TOKEN.trim() || undefined;
  const home = env.HF_HOME || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "huggingface");
  try {
    return readFileSync(env.HF_TOKEN_PATH || join(home, "token"), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
