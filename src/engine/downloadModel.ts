/**
 * Fetches a GGUF from an http(s) URL or `hf:<owner>/<repo>/<file>` into the cache once, atomically, and returns its
 * path. A cut download is resumed from its `.part` file with a Range request; a full disk is an error for that request.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { LlamaportError } from "./EngineError.ts";
import { ggufDataEnd } from "./ggufDataEnd.ts";

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
  if (existsSync(target)) return Promise.resolve(target);
  let pending = inFlight.get(target);
  if (!pending) {
    pending = fetchToFile(url, target, options.signal).finally(() => inFlight.delete(target));
    inFlight.set(target, pending);
  }
  return pending;
}

/**
 * The partial file of this process. Each process writes its own (`<target>.part-<pid>`), so two servers sharing a
 * cache never write into one file; a part left by a process that died is taken over by renaming it, which only one
 * process can win.
 */
function partPath(target: string, pid = process.pid): string {
  return `${target}.part-${pid}`;
}

async function fetchToFile(url: string, target: string, signal?: AbortSignal): Promise<string> {
  await mkdir(dirname(target), { recursive: true });
  const part = partPath(target);
  await adoptStalePart(target, part);
  let offset = (await stat(part).catch(() => undefined))?.size ?? 0;
  let response = await get(url, offset, signal);
  let total: number | undefined;
  if (offset > 0) {
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
    if (response.status === 206 && range && Number(range[1]) === offset) total = range[2] === "*" ? undefined : Number(range[2]);
    else {
      // No resume: the server ignored the Range (200 sends the whole file), or the part is no prefix of it (416).
      if (response.status !== 200) {
        await response.body?.cancel();
        response = await get(url, 0, signal);
      }
      await rm(part, { force: true });
      offset = 0;
    }
  }
  if (!response.ok || !response.body) throw new LlamaportError("unavailable", `cannot download ${url}: HTTP ${response.status}`);
  if (offset === 0) total = Number(response.headers.get("content-length") ?? Number.NaN) || undefined;
  await writeBody(url, response.body, part, offset);
  await checkComplete(url, part, total);
  await rename(part, target);
  return target;
}

function get(url: string, offset: number, signal?: AbortSignal): Promise<Response> {
  return fetch(url, { signal, redirect: "follow", headers: offset > 0 ? { range: `bytes=${offset}-` } : undefined }).catch(
    (error: unknown) => {
      throw new LlamaportError("unavailable", `cannot download ${url}: ${(error as Error).message}`, { cause: error });
    },
  );
}

/**
 * Appends the body to the part file, awaiting every write: a write that fails (a full disk) is an error for this
 * request, never an unhandled rejection that ends the process. A full disk removes the part; a cut connection keeps it
 * for the next request to resume.
 */
async function writeBody(url: string, body: ReadableStream<Uint8Array>, part: string, offset: number): Promise<void> {
  const file = await open(part, offset > 0 ? "a" : "w");
  let written = offset;
  let phase: "reading" | "writing" = "reading";
  try {
    for await (const chunk of body) {
      if (written === 0 && chunk.byteLength >= 4 && String.fromCharCode(chunk[0]!, chunk[1]!, chunk[2]!, chunk[3]!) !== "GGUF") {
        await body.cancel().catch(() => {});
        throw new LlamaportError("invalid_request", `${url} is not a GGUF file`);
      }
      phase = "writing";
      for (let at = 0; at < chunk.byteLength; ) at += (await file.write(chunk, at)).bytesWritten;
      phase = "reading";
      written += chunk.byteLength;
    }
    phase = "writing";
    await file.sync();
    await file.close();
  } catch (error) {
    await file.close().catch(() => {});
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof LlamaportError || phase === "writing") await rm(part, { force: true });
    if (error instanceof LlamaportError) throw error;
    if (code === "ENOSPC" || code === "EDQUOT")
      throw new LlamaportError("unavailable", `cannot download ${url}: no space left on the disk of the model cache`, { cause: error });
    if (phase === "writing")
      throw new LlamaportError(
        "unavailable",
        `cannot download ${url}: writing the model cache failed (${code ?? (error as Error).message})`,
        {
          cause: error,
        },
      );
    throw new LlamaportError(
      "unavailable",
      `download of ${url} was cut short after ${written} bytes (${(error as Error).message}); the next request resumes it`,
      { cause: error },
    );
  }
}

/** Size and GGUF structure agree before the part becomes the model: a cut download must never look complete. */
async function checkComplete(url: string, part: string, total: number | undefined): Promise<void> {
  const size = (await stat(part)).size;
  if (total !== undefined && size !== total) {
    if (size > total) await rm(part, { force: true });
    throw new LlamaportError("unavailable", `download of ${url} was cut short: ${size} of ${total} bytes; the next request resumes it`);
  }
  let needed: number;
  try {
    needed = await ggufDataEnd(part);
  } catch (error) {
    // A header cut in the middle cannot be read: resumable. Anything else is no model.
    if (total === undefined)
      throw new LlamaportError("unavailable", `download of ${url} was cut short (${size} bytes); the next request resumes it`);
    await rm(part, { force: true });
    throw new LlamaportError("invalid_request", `${url} is not a valid GGUF file: ${(error as Error).message}`);
  }
  if (size < needed)
    throw new LlamaportError(
      "unavailable",
      `download of ${url} was cut short: ${size} bytes, its tensors end at byte ${needed}; the next request resumes it`,
    );
}

/** Takes over a part left by a process that is gone, to resume it. */
async function adoptStalePart(target: string, part: string): Promise<void> {
  if (existsSync(part)) return;
  const prefix = `${basename(target)}.part-`;
  for (const name of await readdir(dirname(target)).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || isAlive(pid)) continue;
    try {
      await rename(join(dirname(target), name), part);
      return;
    } catch {
      // Another process took it first.
    }
  }
}

/**
 * Clears what interrupted writers (`kill -9`, a crash) left in the model cache: temp files of the GGUF writer, and
 * partial downloads nobody resumed for a day. Newer parts stay for the next request of that model to resume.
 */
export async function cleanStaleDownloads(cacheDir: string, log: (message: string) => void): Promise<void> {
  const dir = join(cacheDir, "models");
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const match = /\.(tmp|part)-(\d+)(?:-\d+)?$/.exec(name);
    if (!match || isAlive(Number(match[2]))) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info || (match[1] === "part" && info.mtimeMs > dayAgo && !existsSync(path.slice(0, -match[0].length)))) continue;
    await rm(path, { force: true });
    log(`removed ${name} from the model cache (left by a process that is gone)`);
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
