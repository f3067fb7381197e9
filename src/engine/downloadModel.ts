/** Fetches a GGUF from an http(s) URL or `hf:<owner>/<repo>/<file>` into the cache once, atomically, and returns its path. */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { LlamaportError } from "./EngineError.ts";

export interface DownloadOptions {
  cacheDir: string;
  /** Base URL for `hf:` sources (default: the public hub). */
  hfEndpoint?: string;
  signal?: AbortSignal;
}

const inFlight = new Map<string, Promise<string>>();

/** Maps `hf:owner/repo/path/to/file.gguf` (optionally `@revision` after the repo) to a download URL. */
export function sourceToUrl(source: string, hfEndpoint?: string): string {
  if (!source.startsWith("hf:")) return source;
  const match = /^hf:([^/]+)\/([^/@]+)(?:@([^/]+))?\/(.+\.gguf)$/.exec(source);
  if (!match) throw new LlamaportError("invalid_request", `bad hf source "${source}": expected hf:<owner>/<repo>/<file.gguf>`);
  const [, owner, repo, revision = "main", file] = match;
  const base = (hfEndpoint ?? "https://huggingface.co").replace(/\/$/, "");
  return `${base}/${owner}/${repo}/resolve/${revision}/${file}`;
}

/** Where a downloaded source is kept in the cache (whether or not it is there yet). */
export function downloadTarget(source: string, options: Omit<DownloadOptions, "signal">): string {
  const url = sourceToUrl(source, options.hfEndpoint);
  const hash = createHash("sha256").update(url).digest("hex").slice(0, 12);
  return join(options.cacheDir, "models", `${hash}-${basename(new URL(url).pathname)}`);
}

export function downloadModel(source: string, options: DownloadOptions): Promise<string> {
  const url = sourceToUrl(source, options.hfEndpoint);
  const target = downloadTarget(source, options);
  const dir = dirname(target);
  if (existsSync(target)) return Promise.resolve(target);
  let pending = inFlight.get(target);
  if (!pending) {
    pending = fetchToFile(url, dir, target, options.signal).finally(() => inFlight.delete(target));
    inFlight.set(target, pending);
  }
  return pending;
}

async function fetchToFile(url: string, dir: string, target: string, signal?: AbortSignal): Promise<string> {
  await mkdir(dir, { recursive: true });
  const temp = `${target}.part-${process.pid}-${Date.now()}`;
  try {
    let response: Response;
    try {
      response = await fetch(url, { signal, redirect: "follow" });
    } catch (error) {
      throw new LlamaportError("unavailable", `cannot download ${url}: ${(error as Error).message}`, { cause: error });
    }
    if (!response.ok || !response.body) throw new LlamaportError("unavailable", `cannot download ${url}: HTTP ${response.status}`);
    const expected = Number(response.headers.get("content-length") ?? NaN);
    const writer = Bun.file(temp).writer();
    const reader = response.body.getReader();
    let magicChecked = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!magicChecked && value.byteLength >= 4) {
        magicChecked = true;
        if (String.fromCharCode(value[0]!, value[1]!, value[2]!, value[3]!) !== "GGUF") {
          await reader.cancel();
          await writer.end();
          throw new LlamaportError("invalid_request", `${url} is not a GGUF file`);
        }
      }
      writer.write(value);
    }
    await writer.end();
    const size = (await stat(temp)).size;
    if (Number.isFinite(expected) && size !== expected)
      throw new LlamaportError("unavailable", `download of ${url} was cut short: ${size} of ${expected} bytes`);
    await rename(temp, target);
    return target;
  } finally {
    await rm(temp, { force: true });
  }
}
