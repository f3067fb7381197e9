/** A downloaded file counts as a model only when it is a GGUF, its size and its header's tensor extent agree, and its SHA-256 is the one the hub announced. */
import { open, stat } from "node:fs/promises";
import { LlamaportError } from "../EngineError.ts";
import { ggufDataEnd } from "./ggufDataEnd.ts";

export interface ExpectedFile {
  /** Bytes the server said it has (0 or undefined: unknown). */
  sizeBytes?: number;
  /** The SHA-256 the server announced. */
  sha256?: string;
}

/**
 * Throws unless `path` is a complete GGUF. A cut download must never look complete: without a Content-Length a
 * connection that ends early looks like the end of the file, and only the header's tensor extent tells.
 */
export async function verifyDownload(
  url: string,
  path: string,
  expected: ExpectedFile,
  sha256Of: (path: string) => Promise<string>,
): Promise<void> {
  const size = (await stat(path)).size;
  const handle = await open(path, "r");
  const magic = Buffer.alloc(4);
  try {
    await handle.read(magic, 0, 4, 0);
  } finally {
    await handle.close();
  }
  if (magic.toString("latin1") !== "GGUF") throw new LlamaportError("invalid_request", `${url} is not a GGUF file`);
  if (expected.sizeBytes && size !== expected.sizeBytes)
    throw new LlamaportError("unavailable", `download of ${url} was cut short: ${size} of ${expected.sizeBytes} bytes`);
  let needed: number;
  try {
    needed = await ggufDataEnd(path);
  } catch (error) {
    // A header cut in the middle cannot be read either.
    throw new LlamaportError("unavailable", `download of ${url} is no complete GGUF (${size} bytes): ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (size < needed)
    throw new LlamaportError("unavailable", `download of ${url} was cut short: ${size} bytes, its tensors end at byte ${needed}`);
  if (!expected.sha256) return;
  const actual = await sha256Of(path);
  if (actual !== expected.sha256)
    throw new LlamaportError(
      "unavailable",
      `download of ${url} is corrupt: its SHA-256 is ${actual}, the server announced ${expected.sha256}`,
    );
}
