/**
 * Fetches a GGUF (an http(s) URL or `hf:<owner>/<repo>/<file>`) into the model cache once, with node-llama-cpp's
 * downloader (ipull: parallel connections, retries, split models, resumable `.ipull` files), and returns its path. Around
 * it: a HEAD probe for quick clear errors, a stall watchdog, one download shared by all who wait for it, and no file in
 * the cache before it is verified.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, rename, rm, rmdir, stat, statfs } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { formatByteSize } from "../../config/byteSize.ts";
import { LlamaportError } from "../EngineError.ts";
import { importNodeLlamaCpp } from "../nodeLlamaCpp.ts";
import type { DownloadProgress } from "../types.ts";
import { probeDownload } from "./probe.ts";
import { defaultHfEndpoint, downloadTarget, sourceToUrl } from "./sources.ts";
import { adoptStaleParts, stagingFolder } from "./staleDownloads.ts";
import { verifyDownload } from "./verifyDownload.ts";

export interface DownloadOptions {
  cacheDir: string;
  /** Base URL for `hf:` sources (default: the public hub). */
  hfEndpoint?: string;
  /** Sent to the hub (never elsewhere) for gated and private models. */
  hfToken?: string;
  /** Told once the server answered: the URL and what it announced (the first of several parts, for a split model). */
  onStart?(start: DownloadStart): void;
  /** Told at most every 100 ms while bytes arrive. */
  onProgress?(progress: DownloadProgress): void;
  /** Told when every byte is there and the file is being checked (GGUF structure, SHA-256). */
  onVerify?(): void;
  /** This caller stops waiting; the download stops (resumable) when nobody waits for it any more. */
  signal?: AbortSignal;
  /** A download that gets no further for this long is stopped (default 60 s); the next attempt resumes it. */
  stallTimeoutMs?: number;
  /** A file's SHA-256 (the engine passes its FileDigests, which remembers it for /api/tags). */
  sha256Of?(path: string): Promise<string>;
}

export interface DownloadStart {
  url: string;
  /** The SHA-256 the server announced (Hugging Face does for model files). */
  sha256?: string;
  /** Bytes announced by the server, if it did. */
  sizeBytes?: number;
}

/** What one download reports to everyone waiting for it. */
type DownloadEvent = { type: "start"; start: DownloadStart } | { type: "progress"; progress: DownloadProgress } | { type: "verify" };

const inFlight = new Map<string, SharedDownload>();

/** The cached file of `source`, downloaded first if needed; callers asking for the same file share one download. */
export function downloadModel(source: string, options: DownloadOptions): Promise<string> {
  const url = sourceToUrl(source, options.hfEndpoint);
  const target = downloadTarget(source, options);
  if (existsSync(target)) return Promise.resolve(target);
  let shared = inFlight.get(target);
  if (!shared || shared.cancelled) {
    // A cancelled download may still be closing its files: the next one starts after it.
    const before = shared?.done.catch(() => {});
    const next = new SharedDownload(async (signal, emit) => {
      await before;
      return fetchModel(url, target, { ...options, signal, emit });
    });
    inFlight.set(target, next);
    next.done.then(
      () => inFlight.get(target) === next && inFlight.delete(target),
      () => inFlight.get(target) === next && inFlight.delete(target),
    );
    shared = next;
  }
  return shared.join((event) => {
    if (event.type === "start") options.onStart?.(event.start);
    else if (event.type === "progress") options.onProgress?.(event.progress);
    else options.onVerify?.();
  }, options.signal);
}

/**
 * One download and everyone waiting for it: each gets its events (a late one gets the start first); it is cancelled
 * when the last one stops waiting.
 */
class SharedDownload {
  readonly done: Promise<string>;
  private readonly controller = new AbortController();
  private readonly listeners = new Set<(event: DownloadEvent) => void>();
  private started?: DownloadEvent;
  private waiting = 0;

  constructor(run: (signal: AbortSignal, emit: (event: DownloadEvent) => void) => Promise<string>) {
    this.done = run(this.controller.signal, (event) => {
      if (event.type === "start") this.started = event;
      for (const listener of this.listeners) listener(event);
    });
    this.done.catch(() => {}); // reported to each waiter by `join`
  }

  get cancelled(): boolean {
    return this.controller.signal.aborted;
  }

  join(listener: (event: DownloadEvent) => void, signal?: AbortSignal): Promise<string> {
    if (signal?.aborted) return Promise.reject(new LlamaportError("aborted", "download cancelled"));
    this.waiting++;
    if (this.started) listener(this.started);
    this.listeners.add(listener);
    return new Promise((resolve, reject) => {
      let left = false;
      const leave = () => {
        if (left) return false;
        left = true;
        this.waiting--;
        this.listeners.delete(listener);
        signal?.removeEventListener("abort", onAbort);
        return true;
      };
      const onAbort = () => {
        if (!leave()) return;
        reject(new LlamaportError("aborted", "download cancelled"));
        if (this.waiting === 0) this.controller.abort();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.done.then(
        (path) => leave() && resolve(path),
        (error: unknown) => leave() && reject(error),
      );
    });
  }
}

interface FetchOptions extends DownloadOptions {
  signal: AbortSignal;
  emit(event: DownloadEvent): void;
}

async function fetchModel(url: string, target: string, options: FetchOptions): Promise<string> {
  const modelsDir = dirname(target);
  const staging = stagingFolder(modelsDir);
  const hfEndpoint = options.hfEndpoint ?? defaultHfEndpoint;
  const onHub = new URL(url).origin === new URL(hfEndpoint).origin;
  const expected = await probeDownload(url, { token: onHub ? options.hfToken : undefined, signal: options.signal });
  options.emit({ type: "start", start: { url, ...expected } });
  await mkdir(staging, { recursive: true });
  try {
    await adoptStaleParts(modelsDir, staging, partFileNames(basename(target)));
    const files = await runDownloader(url, staging, basename(target), hfEndpoint, options);
    options.emit({ type: "verify" });
    try {
      const sha256 = files.length === 1 ? expected.sha256 : undefined;
      for (const file of files)
        await verifyDownload(file.url, file.path, { sizeBytes: file.totalSize, sha256 }, options.sha256Of ?? sha256OfFile);
    } catch (error) {
      // The downloader took these files as complete, so there is nothing to resume: the next attempt starts over.
      for (const file of files) await rm(file.path, { force: true });
      throw error;
    }
    // The first part last: its presence in the cache means the whole model is there.
    for (const file of [...files].reverse()) await rename(file.path, join(modelsDir, basename(file.path)));
    return target;
  } finally {
    await rmdir(staging).catch(() => {}); // only when empty: a partial download or another one may be in it
  }
}

/**
 * Refuses a file larger than the free space of the cache's disk before a byte is written: filling the disk would fail
 * the download anyway, and everything else writing to that disk with it. Parts already there (preallocated by the
 * downloader) count as room.
 */
async function ensureRoom(url: string, staging: string, fileNames: string[], sizeBytes: number | undefined): Promise<void> {
  if (!sizeBytes) return;
  const disk = await statfs(staging).catch(() => undefined);
  if (!disk) return;
  let held = 0;
  for (const name of fileNames) held += ((await stat(join(staging, `${name}.ipull`)).catch(() => undefined))?.blocks ?? 0) * 512;
  const free = disk.bavail * disk.bsize;
  if (sizeBytes - held > free)
    throw new LlamaportError(
      "unavailable",
      `cannot download ${url}: it is ${formatByteSize(sizeBytes)} and the disk of the model cache has ${formatByteSize(free)} free`,
    );
}

/** What the downloader fetched: one file, or each part of a split model. */
interface FetchedFile {
  url: string;
  path: string;
  totalSize: number;
}

/** Runs node-llama-cpp's downloader into `staging`, with a stall watchdog; errors become clear LlamaportErrors. */
async function runDownloader(url: string, staging: string, fileName: string, hfEndpoint: string, options: FetchOptions) {
  const { createModelDownloader } = await importNodeLlamaCpp();
  const report = throttled((progress) => options.emit({ type: "progress", progress }));
  const speed = new SpeedMeter();
  let downloader: Awaited<ReturnType<typeof createModelDownloader>>;
  try {
    // Creating it asks the server for the file's headers, which a server that never answers would hold forever (the
    // stall watchdog below starts only once there is a download to watch).
    downloader = await answeredWithin(
      options,
      url,
      createModelDownloader({
        modelUri: url,
        dirPath: staging,
        fileName,
        // Kept for the next attempt to resume, also when this one is cancelled or stalls.
        deleteTempFileOnCancel: false,
        // `null`: node-llama-cpp must not read HF_TOKEN or ~/.cache/huggingface itself; the token comes from our settings.
        // (its type says string, its code takes null for "none").
        tokens: { huggingFace: (options.hfToken ?? null) as string },
        endpoints: { huggingFace: `${hfEndpoint.replace(/\/$/, "")}/` },
        onProgress: (status) => report(speed.progress(status.totalSize, status.downloadedSize)),
      }),
    );
  } catch (error) {
    throw downloadError(url, error, options.signal);
  }
  // The size the downloader found (all parts of a split model), before it plans its chunks: a server that announces a
  // petabyte would otherwise hold the event loop for minutes while they are laid out.
  await ensureRoom(url, staging, partFileNames(fileName), downloader.totalSize);
  const stall = watchStalls(downloader, options.stallTimeoutMs ?? 60_000);
  try {
    await downloader.download({ signal: options.signal });
  } catch (error) {
    await downloader.cancel({ deleteTempFile: isDiskFull(error) }).catch(() => {});
    throw downloadError(url, error, options.signal);
  } finally {
    stall.stop();
    report.flush();
  }
  // ipull ends a cancelled download without an error: it is not done.
  if (options.signal.aborted || stall.stalled) {
    await downloader.cancel({ deleteTempFile: false }).catch(() => {});
    if (options.signal.aborted) throw new LlamaportError("aborted", "download cancelled");
    throw new LlamaportError(
      "unavailable",
      `download of ${url} stalled: no progress for ${(options.stallTimeoutMs ?? 60_000) / 1000} s; the next attempt resumes it`,
    );
  }
  report.flush();
  const urls = partUrls(url);
  return downloader.filesInfo.map(
    (file, index): FetchedFile => ({ url: urls[index] ?? url, path: file.filePath, totalSize: file.totalSize }),
  );
}

/** `step`'s result, unless it takes longer than the stall timeout or the caller stops waiting first. */
function answeredWithin<T>(options: FetchOptions, url: string, step: Promise<T>): Promise<T> {
  const timeoutMs = options.stallTimeoutMs ?? 60_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new LlamaportError("unavailable", `download of ${url} stalled: the server sent no answer for ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    onAbort = () => reject(new LlamaportError("aborted", "download cancelled"));
    options.signal.addEventListener("abort", onAbort, { once: true });
  });
  step.catch(() => {}); // once given up on, its own failure goes nowhere
  return Promise.race([step, stopped]).finally(() => {
    clearTimeout(timer);
    options.signal.removeEventListener("abort", onAbort!);
  });
}

/** Stops the download when the bytes fetched have not grown for `timeoutMs` (failing connections keep ipull retrying for minutes). */
function watchStalls(downloader: { downloadedSize: number; cancel(o: { deleteTempFile: boolean }): Promise<void> }, timeoutMs: number) {
  let best = -1;
  let lastGrowth = performance.now();
  const state = {
    stalled: false,
    stop: () => clearInterval(timer),
  };
  const timer = setInterval(
    () => {
      const size = downloader.downloadedSize;
      if (size > best) {
        best = size;
        lastGrowth = performance.now();
      } else if (performance.now() - lastGrowth > timeoutMs && !state.stalled) {
        state.stalled = true;
        void downloader.cancel({ deleteTempFile: false }).catch(() => {});
      }
    },
    Math.min(1_000, timeoutMs / 4),
  );
  return state;
}

function downloadError(url: string, error: unknown, signal: AbortSignal): LlamaportError {
  if (error instanceof LlamaportError) return error;
  if (signal.aborted) return new LlamaportError("aborted", "download cancelled", { cause: error });
  if (isDiskFull(error))
    return new LlamaportError("unavailable", `cannot download ${url}: no space left on the disk of the model cache`, { cause: error });
  const status = (error as { statusCode?: number }).statusCode;
  if (status === 404) return new LlamaportError("not_found", `cannot download ${url}: HTTP 404 (no such file)`, { cause: error });
  if (status !== undefined) return new LlamaportError("unavailable", `cannot download ${url}: HTTP ${status}`, { cause: error });
  return new LlamaportError("unavailable", `cannot download ${url}: ${(error as Error).message}`, { cause: error });
}

const isDiskFull = (error: unknown) => ["ENOSPC", "EDQUOT"].includes((error as NodeJS.ErrnoException)?.code ?? "");

/**
 * Speed over the last few seconds, and the time left at that speed. (ipull's own average divides the bytes of the last
 * ten seconds by ten even when the download is younger, so its first seconds show a fraction of the real speed.)
 */
class SpeedMeter {
  private readonly samples: { at: number; bytes: number }[] = [];

  progress(totalBytes: number, downloadedBytes: number): DownloadProgress {
    const now = performance.now();
    this.samples.push({ at: now, bytes: downloadedBytes });
    while (this.samples.length > 2 && now - this.samples[1]!.at > 5_000) this.samples.shift();
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    const bytesPerSecond = seconds >= 0.2 ? Math.max(0, (downloadedBytes - first.bytes) / seconds) : 0;
    return {
      totalBytes,
      downloadedBytes,
      bytesPerSecond,
      secondsLeft: bytesPerSecond > 0 && totalBytes > 0 ? Math.max(0, totalBytes - downloadedBytes) / bytesPerSecond : undefined,
    };
  }
}

/** Calls `report` at most every 100 ms, the latest value held back meanwhile (sent by a timer, or by `flush()`). */
function throttled(report: (progress: DownloadProgress) => void) {
  let lastAt = 0;
  let pending: DownloadProgress | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (!pending) return;
    lastAt = performance.now();
    const progress = pending;
    pending = undefined;
    report(progress);
  };
  const send = (progress: DownloadProgress) => {
    pending = progress;
    const wait = lastAt + 100 - performance.now();
    if (wait <= 0) flush();
    else timer ??= setTimeout(flush, wait);
  };
  return Object.assign(send, { flush });
}

const splitPart = /-(\d{5})-of-(\d{5})\.gguf$/;

/** The files of a download: one, or every part of a split GGUF (`model-00001-of-00003.gguf`). */
function partFileNames(fileName: string): string[] {
  const match = splitPart.exec(fileName);
  if (!match) return [fileName];
  const count = Number(match[2]);
  const stem = fileName.slice(0, match.index);
  return Array.from({ length: count }, (_, i) => `${stem}-${String(i + 1).padStart(5, "0")}-of-${match[2]}.gguf`);
}

function partUrls(url: string): string[] {
  const parsed = new URL(url);
  const match = splitPart.exec(parsed.pathname);
  if (!match) return [url];
  return partFileNames(basename(parsed.pathname)).map((name) => {
    const part = new URL(url);
    part.pathname = join(dirname(parsed.pathname), name);
    return part.href;
  });
}

/** Streams a file through SHA-256 (1 MiB reads, so other work runs in between). */
async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 ** 2 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
