/**
 * Test support: a local stand-in for Hugging Face and plain file servers, on a random loopback port. It answers what
 * node-llama-cpp's resolver and downloader ask for: `GET /v2/<owner>/<repo>/manifests/<tag>` (the file of a
 * quantization, as the hub answers llama.cpp's user agent), `/<owner>/<repo>/resolve/<rev>/<file>` (a 302 to a CDN
 * path, with the file's SHA-256 in `x-linked-etag`, as the hub does for LFS files), and files with Range support.
 * Faults can be arranged per file: cut connections, no Range support, a gated repository.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface HubFile {
  bytes: Uint8Array;
  /**
   * A fault for one GET of this file: `index` counts its GETs from 1 (node-llama-cpp's downloader first GETs the
   * headers only, then ranges of whole 5 MiB chunks, three at a time); `ranged` says the GET asked for a range, `start`
   * and `end` (exclusive) are the bytes it gets. After that many bytes of the response: `cutAfter` drops the connection,
   * `shortAfter` ends the (chunked) body cleanly, as a proxy may, and `stallAfter` sends nothing more.
   */
  fault?(request: { index: number; ranged: boolean; start: number; end: number }): HubFault | undefined;
  /** Serve no Range and no Accept-Ranges (the whole file every time). */
  noRange?: boolean;
  /** Serve without a Content-Length (chunked), as dynamic servers do. */
  noLength?: boolean;
  /** Announce another SHA-256 than the bytes have. */
  wrongSha256?: boolean;
  /** Send bodies at about this speed (a slow link), in 64 KiB pieces. */
  bytesPerSecond?: number;
}

export interface HubFault {
  cutAfter?: number;
  shortAfter?: number;
  stallAfter?: number;
}

export interface HubRequest {
  method: string;
  path: string;
  range: string | null;
  authorization: string | null;
  userAgent: string | null;
}

export interface ModelHub {
  url: string;
  requests: HubRequest[];
  /** Adds a file to a repository (`owner/repo`) and returns its download path (`/owner/repo/resolve/main/<file>`). */
  addRepoFile(repo: string, file: string, content: HubFile): string;
  /** Adds a file served at a plain path (`/static/files/<name>`: not two segments, which node-llama-cpp would take for a repository). */
  addFile(name: string, content: HubFile): string;
  /** Repositories that answer 401 without this bearer token. */
  gate(repo: string, token: string): void;
  stop(): void;
}

/** A GGUF padded to `bytes` (llama.cpp ignores bytes after the tensor data): big enough for several download chunks. */
export function paddedGguf(gguf: Uint8Array, bytes: number): Uint8Array {
  const padded = new Uint8Array(Math.max(bytes, gguf.byteLength));
  padded.set(gguf);
  for (let i = gguf.byteLength; i < padded.byteLength; i++) padded[i] = (i * 31 + (i >> 11)) & 0xff;
  return padded;
}

/** Writes `body` in 64 KiB pieces at about `bytesPerSecond`. */
function sendSlowly(res: ServerResponse, body: Uint8Array, bytesPerSecond: number): void {
  const piece = 64 * 1024;
  let at = 0;
  const next = () => {
    if (res.destroyed) return;
    if (at >= body.byteLength) return void res.end();
    res.write(body.subarray(at, at + piece));
    at += piece;
    setTimeout(next, (1000 * piece) / bytesPerSecond);
  };
  next();
}

export async function startModelHub(): Promise<ModelHub> {
  const repos = new Map<string, Map<string, HubFile>>();
  const files = new Map<string, HubFile>();
  const gates = new Map<string, string>();
  const served = new Map<HubFile, number>();
  const requests: HubRequest[] = [];
  const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };

  const serveFile = (req: IncomingMessage, res: ServerResponse, file: HubFile): void => {
    const size = file.bytes.byteLength;
    const headers: Record<string, string> = {};
    if (!file.noRange) headers["accept-ranges"] = "bytes";
    let start = 0;
    let end = size - 1;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const ranged = range !== null && !file.noRange;
    if (ranged) {
      start = Number(range[1]);
      end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size) return void res.writeHead(416, { "content-range": `bytes */${size}` }).end();
      headers["content-range"] = `bytes ${start}-${end}/${size}`;
    }
    const body = file.bytes.subarray(start, end + 1);
    if (req.method === "HEAD")
      return void res.writeHead(ranged ? 206 : 200, { ...headers, "content-length": String(body.byteLength) }).end();
    const index = (served.get(file) ?? 0) + 1;
    served.set(file, index);
    const fault = file.fault?.({ index, ranged: req.headers.range !== undefined, start, end: end + 1 }) ?? {};
    // Without a Content-Length the body is chunked, and a short one ends like a whole one.
    if (!file.noLength && fault.shortAfter === undefined) headers["content-length"] = String(body.byteLength);
    res.writeHead(ranged ? 206 : 200, headers);
    const first = fault.cutAfter ?? fault.shortAfter ?? fault.stallAfter;
    if (first === undefined && file.bytesPerSecond) return void sendSlowly(res, body, file.bytesPerSecond);
    if (first === undefined) return void res.end(body);
    res.write(body.subarray(0, first), () => {
      if (fault.cutAfter !== undefined) res.socket?.destroy();
      else if (fault.shortAfter !== undefined) res.end();
      // stallAfter: nothing more, until the client gives up
    });
  };

  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://hub").pathname);
    const authorization = req.headers.authorization ?? null;
    requests.push({
      method: req.method ?? "",
      path,
      range: req.headers.range ?? null,
      authorization,
      userAgent: req.headers["user-agent"] ?? null,
    });
    const gated = (repo: string) => gates.has(repo) && authorization !== `Bearer ${gates.get(repo)}`;
    const denied = () => json(res, 401, { error: "Access to this model is restricted. You must have access to it and be authenticated." });
    // The manifest llama.cpp and node-llama-cpp read to pick a quantization's file.
    const manifest = /^\/v2\/([^/]+)\/([^/]+)\/manifests\/([^/]+)$/.exec(path);
    if (manifest) {
      const repo = `${manifest[1]}/${manifest[2]}`;
      if (gated(repo)) return denied();
      const tag = manifest[3]!.toLowerCase() === "latest" ? "q4_k_m" : manifest[3]!.toLowerCase();
      const names = [...(repos.get(repo)?.keys() ?? [])].filter((name) => name.endsWith(".gguf"));
      const picked = names.find((name) => name.toLowerCase().includes(tag));
      if (!picked) return json(res, 400, { error: "The specified tag is not available in the repository" });
      return json(res, 200, { ggufFile: { rfilename: picked, size: repos.get(repo)!.get(picked)!.bytes.byteLength } });
    }
    const resolve = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (resolve) {
      const repo = `${resolve[1]}/${resolve[2]}`;
      if (gated(repo)) return denied();
      const file = repos.get(repo)?.get(resolve[4]!);
      if (!file) return json(res, 404, { error: "Entry not found" });
      // The hub redirects LFS files to its CDN and names their hash and size on the redirect.
      return void res
        .writeHead(302, {
          location: `/cdn/${repo}/${resolve[4]}`,
          "x-linked-etag": `"${file.wrongSha256 ? "0".repeat(64) : sha(file.bytes)}"`,
          "x-linked-size": String(file.bytes.byteLength),
        })
        .end();
    }
    const cdn = /^\/cdn\/([^/]+\/[^/]+)\/(.+)$/.exec(path);
    const file = cdn ? repos.get(cdn[1]!)?.get(cdn[2]!) : files.get(path);
    if (file) return serveFile(req, res, file);
    res.writeHead(404).end("not found");
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    addRepoFile(repo, name, content) {
      if (!repos.has(repo)) repos.set(repo, new Map());
      repos.get(repo)!.set(name, content);
      return `/${repo}/resolve/main/${name}`;
    },
    addFile(name, content) {
      files.set(`/static/files/${name}`, content);
      return `/static/files/${name}`;
    },
    gate(repo, token) {
      gates.set(repo, token);
    },
    stop() {
      server.closeAllConnections();
      server.close();
    },
  };
}
