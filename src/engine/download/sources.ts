/**
 * What can be downloaded and where it goes: `hf:` sources and URLs to a download URL and a cache path, and the sources
 * `pull` takes (`hf:owner/repo:QUANT`, Ollama's `hf.co/owner/repo:QUANT`) resolved to one file the way node-llama-cpp
 * resolves them.
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MODEL_NAME_PATTERN } from "../../config/modelsSchema.ts";
import { clip, LlamaportError } from "../EngineError.ts";
import { nodeLlamaCppSpecifier } from "../nodeLlamaCpp.ts";

export const defaultHfEndpoint = "https://huggingface.co";

/** `hf:owner/repo/path/to/file.gguf`, optionally `repo@revision`: one file of a Hugging Face repository. */
const hfFileSource = /^hf:([^/]+)\/([^/@]+)(?:@([^/]+))?\/(.+\.gguf)$/;

/** `hf:owner/repo:QUANT`, `hf:owner/repo` and Ollama's `hf.co/owner/repo:QUANT`: a repository, one file to be picked. */
const hfRepoSource = /^(?:hf:|hf\.co\/|huggingface\.co\/|https:\/\/(?:hf\.co|huggingface\.co)\/)([^/:]+)\/([^/:]+)(?::([^/]+))?$/;

export const isRemoteSource = (source: string) => /^(https?:\/\/|hf:)/.test(source);

/** Maps `hf:owner/repo/path/to/file.gguf` (optionally `@revision` after the repo) to a download URL; URLs stay as they are. */
export function sourceToUrl(source: string, hfEndpoint = defaultHfEndpoint): string {
  if (!source.startsWith("hf:")) return source;
  const match = hfFileSource.exec(source);
  if (!match) throw new LlamaportError("invalid_request", `bad hf source "${clip(source)}": expected hf:<owner>/<repo>/<file.gguf>`);
  const [, owner, repo, revision = "main", file] = match;
  // Each part names one path segment on the hub: `..` (or an escaped one) would reach another repository or page there.
  for (const segment of [owner!, repo!, revision, ...file!.split("/")])
    if (isDotSegment(segment))
      throw new LlamaportError("invalid_request", `bad hf source "${clip(source)}": "${clip(segment)}" is no file or folder name`);
  return `${hfEndpoint.replace(/\/$/, "")}/${owner}/${repo}/resolve/${revision}/${file}`;
}

/** An empty, `.` or `..` path segment, also percent-escaped (`%2e%2e`), which URLs resolve away. */
const isDotSegment = (segment: string) => /^(\.|%2e){0,2}$/i.test(segment);

/** A URL path segment decoded, or a clear error for a malformed escape (`%ZZ`, a cut UTF-8 sequence). */
function decodeSegment(segment: string, source: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new LlamaportError("invalid_request", `"${clip(source)}" is not a valid URL: "${clip(segment)}" has a malformed % escape`);
  }
}

/** Where a downloaded source is kept in the cache (whether or not it is there yet): a hash of its URL and its file name. */
export function downloadTarget(source: string, options: { cacheDir: string; hfEndpoint?: string }): string {
  const url = sourceToUrl(source, options.hfEndpoint);
  const hash = createHash("sha256").update(url).digest("hex").slice(0, 12);
  return join(options.cacheDir, "models", `${hash}-${basename(new URL(url).pathname)}`);
}

/** A source `pull` can fetch, resolved to the one file it names. */
export interface PullSource {
  /** What models.yaml gets: `hf:owner/repo/file.gguf` or the URL. */
  source: string;
  /** The GGUF's file name, e.g. `Llama-3.2-1B-Instruct-Q4_K_M.gguf`. */
  fileName: string;
}

export interface ResolveOptions {
  hfEndpoint?: string;
  hfToken?: string;
  signal?: AbortSignal;
}

/**
 * Whether a pull source downloads from the hub: `hf:` sources, Ollama's `hf.co/` repositories, and URLs on the hub
 * endpoint. Anything else is a URL on another server.
 */
export function isHubSource(text: string, hfEndpoint = defaultHfEndpoint): boolean {
  const source = text.trim();
  if (hfRepoSource.test(source) || source.startsWith("hf:")) return true;
  try {
    return new URL(source).origin === new URL(hfEndpoint).origin;
  } catch {
    return false;
  }
}

/** Whether `resolvePullSource` would take the text as a source (without asking any server). */
export function isPullSource(text: string): boolean {
  const source = text.trim();
  return hfRepoSource.test(source) || source.startsWith("hf:") || /^https?:\/\//.test(source);
}

/**
 * A `pull` source as one file. A repository with a quantization (`hf:owner/repo:Q4_K_M`, or none for node-llama-cpp's
 * default Q4_K_M) is looked up in the hub's manifest by node-llama-cpp's own resolver, so it picks the same file as
 * `node-llama-cpp pull` and llama.cpp's `-hf` do. Anything that is no remote source is undefined.
 */
export async function resolvePullSource(text: string, options: ResolveOptions = {}): Promise<PullSource | undefined> {
  const source = text.trim();
  const repo = hfRepoSource.exec(source);
  if (repo) {
    if (isDotSegment(repo[1]!) || isDotSegment(repo[2]!))
      throw new LlamaportError("invalid_request", `bad hf source "${clip(source)}": expected <owner>/<repo> names`);
    return resolveRepository(repo[1]!, repo[2]!, repo[3], options);
  }
  if (source.startsWith("hf:")) {
    sourceToUrl(source); // throws for a malformed one
    return { source, fileName: basename(source) };
  }
  if (!/^https?:\/\//.test(source)) return undefined;
  let url: URL;
  try {
    url = new URL(source);
  } catch {
    throw new LlamaportError("invalid_request", `"${clip(source)}" is not a valid URL`);
  }
  const fileName = decodeSegment(basename(url.pathname), source);
  if (!fileName) throw new LlamaportError("invalid_request", `${clip(source)} names no file`);
  return { source, fileName };
}

/** node-llama-cpp's resolver, from the same runtime the engine imports (it is no public export of the package). */
interface ModelUriResolver {
  parseModelUri(uri: string, convert: boolean, endpoints: { huggingFace: string }): unknown;
  resolveParsedModelUri(
    parsed: unknown,
    options: { tokens: { huggingFace: string | null }; endpoints: { huggingFace: string }; signal?: AbortSignal },
  ): Promise<{ resolvedUrl: string }>;
}

async function resolveRepository(owner: string, repo: string, quant: string | undefined, options: ResolveOptions): Promise<PullSource> {
  const endpoint = `${(options.hfEndpoint ?? defaultHfEndpoint).replace(/\/$/, "")}/`;
  const endpoints = { huggingFace: endpoint };
  const resolver = await importResolver();
  const uri = `hf:${owner}/${repo}${quant ? `:${quant}` : ""}`;
  let resolvedUrl: string;
  try {
    const parsed = resolver.parseModelUri(uri, false, endpoints);
    // `null` keeps node-llama-cpp from reading HF_TOKEN and ~/.cache/huggingface itself: the token comes from our settings.
    ({ resolvedUrl } = await resolver.resolveParsedModelUri(parsed, {
      tokens: { huggingFace: options.hfToken ?? null },
      endpoints,
      signal: options.signal,
    }));
  } catch (error) {
    if (options.signal?.aborted) throw new LlamaportError("aborted", "pull cancelled", { cause: error });
    const message = (error as Error).message;
    const missing = /does not exist/.test(message);
    throw new LlamaportError(missing ? "not_found" : "unavailable", `cannot resolve ${uri}: ${message}`, { cause: error });
  }
  const path = new URL(resolvedUrl).pathname;
  const marker = `/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/resolve/main/`;
  if (!path.startsWith(marker)) throw new LlamaportError("unavailable", `cannot resolve ${uri}: unexpected download URL ${resolvedUrl}`);
  const file = path
    .slice(marker.length)
    .split("/")
    .map((segment) => decodeSegment(segment, resolvedUrl))
    .join("/");
  return { source: `hf:${owner}/${repo}/${file}`, fileName: basename(file) };
}

let resolverPromise: Promise<ModelUriResolver> | undefined;

function importResolver(): Promise<ModelUriResolver> {
  resolverPromise ??= nodeLlamaCppSpecifier().then((specifier) => {
    // The compiled binary names the unpacked runtime's entry file; from source it is the package name.
    const entry = specifier.startsWith("/") ? specifier : fileURLToPath(import.meta.resolve(specifier));
    return import(join(dirname(entry), "utils", "parseModelUri.js")) as Promise<ModelUriResolver>;
  });
  return resolverPromise;
}

/** A registry name for a downloaded file: its name without `.gguf` or a split part suffix, in the characters names allow. */
export function modelNameFor(fileName: string): string {
  const bare = fileName.replace(/\.gguf$/i, "").replace(/-\d{5}-of-\d{5}$/, "");
  const name = bare.replace(/[^A-Za-z0-9._:/-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return new RegExp(MODEL_NAME_PATTERN).test(name) ? name : "model";
}
