/** SHA-256 digests of model files: streamed through the hash (the event loop stays free), once per file version, remembered across restarts. */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

/** What is remembered per file: the version it was computed for (size and modification time) and its digest. */
interface StoredDigest {
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** Chunks of this size keep each hash step under about a millisecond, so other requests are served in between. */
const chunkBytes = 1024 ** 2;

export interface FileDigestsOptions {
  /** A JSON file where computed digests are kept, so a restart does not read gigabytes again. */
  store?: string;
  /** Told once per computed digest (never for one served from memory or the store). */
  onComputed?(path: string, sizeBytes: number, ms: number): void;
}

export class FileDigests {
  private readonly known = new Map<string, StoredDigest>();
  private readonly pending = new Map<string, Promise<string>>();
  private loaded?: Promise<void>;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly options: FileDigestsOptions = {}) {}

  /** The file's SHA-256 as 64 hex digits; a file edited since (other size or modification time) is read again. */
  async digest(path: string): Promise<string> {
    this.loaded ??= this.load();
    await this.loaded;
    const { size, mtimeMs } = await stat(path);
    const known = this.known.get(path);
    if (known?.size === size && known.mtimeMs === mtimeMs) return known.sha256;
    const key = `${path}\0${size}\0${mtimeMs}`;
    let pending = this.pending.get(key);
    if (!pending) {
      pending = this.compute(path, size, mtimeMs);
      this.pending.set(key, pending);
      const clear = () => this.pending.delete(key);
      pending.then(clear, clear);
    }
    return pending;
  }

  private async compute(path: string, size: number, mtimeMs: number): Promise<string> {
    const started = performance.now();
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(path, { highWaterMark: chunkBytes })) hash.update(chunk as Buffer);
    const sha256 = hash.digest("hex");
    this.options.onComputed?.(path, size, performance.now() - started);
    // The file may have changed while it was read: keep the digest only if it is still the version we started with.
    const now = await stat(path);
    if (now.size !== size || now.mtimeMs !== mtimeMs) return sha256;
    this.known.set(path, { size, mtimeMs, sha256 });
    this.save();
    return sha256;
  }

  private async load(): Promise<void> {
    if (!this.options.store) return;
    try {
      const stored = JSON.parse(await readFile(this.options.store, "utf8")) as Record<string, StoredDigest>;
      for (const [path, entry] of Object.entries(stored))
        if (typeof entry?.sha256 === "string" && /^[0-9a-f]{64}$/.test(entry.sha256)) this.known.set(path, entry);
    } catch {
      // No store yet, or an unreadable one: digests are computed again and the store is rewritten.
    }
  }

  /** Writes the store atomically (a temporary file renamed over it), one write at a time. */
  private save(): void {
    const store = this.options.store;
    if (!store) return;
    const text = JSON.stringify(Object.fromEntries(this.known));
    this.saving = this.saving.then(async () => {
      try {
        await mkdir(dirname(store), { recursive: true });
        const temporary = `${store}.${process.pid}.tmp`;
        await writeFile(temporary, text);
        await rename(temporary, store);
      } catch {
        // A cache that cannot be written only costs a recomputation after a restart.
      }
    });
  }
}
