/**
 * One HEAD request before a download: a missing file, a gated repository or a server that is down is a clear error in
 * seconds (the downloader retries such failures for minutes), and a hub's announced SHA-256 is learnt for verification.
 */
import { LlamaportError } from "../EngineError.ts";

export interface ProbeResult {
  /** The file's SHA-256 as the server announces it (Hugging Face's `x-linked-etag` for LFS files), if it does. */
  sha256?: string;
  /** Its size in bytes, if announced. */
  sizeBytes?: number;
}

export interface ProbeOptions {
  /** Sent as a bearer token (only to the hub). */
  token?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

const sha256Of = (etag: string | null) => /^(?:W\/)?"?([0-9a-f]{64})"?$/.exec(etag ?? "")?.[1];

export async function probeDownload(url: string, options: ProbeOptions = {}): Promise<ProbeResult> {
  const signals = [AbortSignal.timeout(options.timeoutMs ?? 30_000), ...(options.signal ? [options.signal] : [])];
  let response: Response;
  try {
    // Redirects are not followed: the hub's redirect carries the file's hash, and the CDN it points to gets no token.
    response = await fetch(url, {
      method: "HEAD",
      redirect: "manual",
      headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
      signal: AbortSignal.any(signals),
    });
  } catch (error) {
    if (options.signal?.aborted) throw new LlamaportError("aborted", "download cancelled", { cause: error });
    throw new LlamaportError("unavailable", `cannot download ${url}: ${(error as Error).message}`, { cause: error });
  }
  const { status, headers } = response;
  if (status === 401 || status === 403)
    throw new LlamaportError(
      "unavailable",
      options.token
        ? `cannot download ${url}: HTTP ${status}; the Hugging Face token (HF_TOKEN) has no access: accept the model's license on its page with that account`
        : `cannot download ${url}: HTTP ${status}; a gated or private model needs a Hugging Face token: set HF_TOKEN`,
    );
  if (status === 404) throw new LlamaportError("not_found", `cannot download ${url}: HTTP 404 (no such file)`);
  // Servers that refuse HEAD (405, 501) may still serve GET: the download tells.
  if (status >= 400 && status !== 405 && status !== 501)
    throw new LlamaportError("unavailable", `cannot download ${url}: HTTP ${status}`, { retryAfter: status === 429 ? 30 : undefined });
  const size = Number(headers.get("x-linked-size") ?? (status < 300 ? headers.get("content-length") : undefined));
  return {
    // Only the hub's header: a plain ETag of 64 hex digits need not be the content's SHA-256.
    sha256: sha256Of(headers.get("x-linked-etag")),
    sizeBytes: Number.isSafeInteger(size) && size > 0 ? size : undefined,
  };
}
