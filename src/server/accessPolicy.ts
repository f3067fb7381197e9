/**
 * Who may use the server, decided per request before routing: the Host header (against DNS rebinding), the browser's
 * Origin (CORS allow-list) and API keys. Modelled on Ollama's host and origin checks (server/routes.go, envconfig).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import { hostname as machineName } from "node:os";
import { clip, LlamaportError } from "../engine/EngineError.ts";

export interface AccessSettings {
  /** The address the server listens on. */
  boundHost: string;
  /** The API keys in force now (flags, key file and models.yaml together); none = no key needed. */
  apiKeys(): readonly string[];
  /** Host names accepted besides the local ones; `*` accepts any. */
  allowedHosts?: readonly string[];
  /** Browser origins accepted besides the local ones; `*` matches any run of characters, `*` alone any origin. */
  allowedOrigins?: readonly string[];
  /** Paths besides `/health` that need no key (`/metrics` with --public-metrics). */
  openPaths?: readonly string[];
}

export type AccessDecision =
  /** Answer with this problem (and these CORS headers, so an allowed page can read it). */
  | { kind: "refuse"; problem: LlamaportError; headers: Record<string, string>; log?: string }
  /** A CORS preflight from an allowed origin: answer 204 with these headers. */
  | { kind: "preflight"; headers: Record<string, string> }
  /** Go on; add these headers to the response. */
  | { kind: "pass"; headers: Record<string, string> };

/** Paths anyone may read without a key: load balancers and llama-server clients poll it. */
const alwaysOpen = ["/health"];

/**
 * A browser opening the web page: `GET /` (or HEAD) asking for HTML. The page is static code that holds no data (it
 * asks the user for a key and sends it with its API calls), so it loads without one.
 */
function opensPage(request: Request, path: string): boolean {
  return (
    path === "/" &&
    (request.method === "GET" || request.method === "HEAD") &&
    (request.headers.get("accept") ?? "").toLowerCase().includes("text/html")
  );
}

/**
 * Origins of pages on this machine, and of editor and desktop app views, as Ollama allows by default. A page served
 * from anywhere else must be listed with `--allowed-origins`.
 */
const localOrigin = /^https?:\/\/(localhost|[^/]+\.localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;
const appOrigin = /^(app|tauri|vscode-webview|vscode-file|chrome-extension|moz-extension|safari-web-extension):\/\//i;

const corsMethods = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS";

export class AccessPolicy {
  /** Whether the Host header is checked: on a loopback address (as Ollama does), or whenever hosts are configured. */
  private readonly checkHosts: boolean;
  private readonly hosts: Set<string>;
  private readonly anyHost: boolean;
  private readonly origins: RegExp[];
  private readonly anyOrigin: boolean;
  private keyDigests: { keys: readonly string[]; digests: Buffer[] } = { keys: [], digests: [] };
  /** Refused origins already logged, so a page polling the server does not flood the log. */
  private readonly loggedOrigins = new Set<string>();
  private readonly openPaths: Set<string>;

  constructor(private readonly settings: AccessSettings) {
    const hosts = (settings.allowedHosts ?? []).map((h) => h.trim().toLowerCase()).filter(Boolean);
    this.anyHost = hosts.includes("*");
    this.hosts = new Set(hosts);
    this.checkHosts = !this.anyHost && (isLoopback(settings.boundHost) || hosts.length > 0);
    const origins = (settings.allowedOrigins ?? []).map((o) => o.trim()).filter(Boolean);
    this.anyOrigin = origins.includes("*");
    this.origins = origins.map(globToRegExp);
    this.openPaths = new Set([...alwaysOpen, ...(settings.openPaths ?? [])]);
  }

  /** Keys are needed (some are configured). */
  get requiresKey(): boolean {
    return this.settings.apiKeys().length > 0;
  }

  decide(request: Request, path: string): AccessDecision {
    const headers = request.headers;
    const host = headers.get("host") ?? "";
    if (!this.hostAllowed(host))
      return {
        kind: "refuse",
        headers: {},
        problem: new LlamaportError(
          "forbidden",
          `Host "${clip(host)}" is not allowed; use localhost or the server's address, or add the name with --allowed-hosts`,
        ),
      };
    const origin = headers.get("origin");
    let cors: Record<string, string> = {};
    if (origin !== null) {
      if (!this.originAllowed(origin, host)) {
        const first = !this.loggedOrigins.has(origin) && this.loggedOrigins.size < 1000;
        if (first) this.loggedOrigins.add(origin);
        return {
          kind: "refuse",
          headers: {},
          problem: new LlamaportError("forbidden", `requests from the web page origin "${clip(origin)}" are not allowed`),
          log: first ? `refused a request from origin ${clip(origin)} (add it with --allowed-origins to allow it)` : undefined,
        };
      }
      cors = { "access-control-allow-origin": origin, vary: "Origin", "access-control-expose-headers": "Retry-After, X-Request-Id" };
      if (request.method === "OPTIONS" && headers.has("access-control-request-method"))
        return {
          kind: "preflight",
          headers: {
            ...cors,
            "access-control-allow-methods": corsMethods,
            "access-control-allow-headers": headers.get("access-control-request-headers") ?? "authorization, content-type, x-api-key",
            "access-control-max-age": "600",
          },
        };
    }
    if (!this.openPaths.has(path) && !opensPage(request, path)) {
      const problem = this.keyProblem(headers);
      if (problem) return { kind: "refuse", headers: cors, problem };
    }
    return { kind: "pass", headers: cors };
  }

  /** A missing or wrong key, or none needed. Keys are compared by their SHA-256 digests in constant time, all of them. */
  private keyProblem(headers: Headers): LlamaportError | undefined {
    const keys = this.settings.apiKeys();
    if (keys.length === 0) return undefined;
    const presented = presentedKey(headers);
    if (presented === undefined)
      return new LlamaportError("unauthorized", "an API key is required: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`");
    const digest = sha256(presented);
    let match = false;
    for (const known of this.digestsOf(keys)) match = timingSafeEqual(digest, known) || match;
    return match ? undefined : new LlamaportError("unauthorized", "the API key is not valid");
  }

  private digestsOf(keys: readonly string[]): Buffer[] {
    if (this.keyDigests.keys !== keys) this.keyDigests = { keys, digests: keys.map(sha256) };
    return this.keyDigests.digests;
  }

  hostAllowed(hostHeader: string): boolean {
    if (!this.checkHosts) return true;
    const host = hostName(hostHeader).toLowerCase();
    // DNS rebinding needs a name the attacker controls; an address literal (or no Host at all, HTTP/1.0) is not one.
    if (host === "" || isIP(host) !== 0) return true;
    if (host === "localhost" || host.endsWith(".localhost") || host.endsWith(".local") || host.endsWith(".internal")) return true;
    if (host === machineName().toLowerCase() || host === this.settings.boundHost.toLowerCase()) return true;
    return this.hosts.has(host);
  }

  originAllowed(origin: string, hostHeader: string): boolean {
    if (this.anyOrigin || localOrigin.test(origin) || appOrigin.test(origin)) return true;
    // The server's own pages (a web UI it serves) call it from its own origin, whatever address they were opened at.
    if (/^https?:\/\//i.test(origin) && origin.slice(origin.indexOf("//") + 2).toLowerCase() === hostHeader.toLowerCase()) return true;
    return this.origins.some((pattern) => pattern.test(origin));
  }
}

/** The key from `Authorization: Bearer <key>` (OpenAI and Ollama clients) or `x-api-key` (Anthropic's SDK). */
function presentedKey(headers: Headers): string | undefined {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    if (match) return match[1]!.trim();
  }
  const key = headers.get("x-api-key");
  return key ? key.trim() : undefined;
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The name part of a Host header: `[::1]:9112` -> `::1`, `llm:80` -> `llm`. */
function hostName(host: string): string {
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    return host.slice(1, end < 0 ? undefined : end);
  }
  const colon = host.indexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}

/** A loopback listening address: only this machine can connect. */
export function isLoopback(address: string): boolean {
  const host = address.toLowerCase().replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\./.test(host) || /^::ffff:127\./.test(host);
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`, "i");
}
