/**
 * The CLI's view of a running server: found by its `/health` at --host and --port, asked through the routes of the
 * built-in plugins (Ollama's `/api/ps` and `/api/show`, OpenAI's streaming chat), with the API key when one is set.
 */
import type { ServeSettings } from "./parseArgs.ts";

export class ServerClient {
  constructor(
    readonly url: string,
    private readonly apiKey?: string,
  ) {}

  /** The llamaport server at the settings' address, or undefined when none answers there (within a second). */
  static async find(settings: ServeSettings): Promise<ServerClient | undefined> {
    const host = settings.host === "0.0.0.0" ? "127.0.0.1" : settings.host === "::" ? "::1" : settings.host;
    const url = `http://${host.includes(":") ? `[${host}]` : host}:${settings.port}`;
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
      const body = (await response.json()) as { status?: unknown };
      return typeof body.status === "string" ? new ServerClient(url, settings.apiKeys[0]) : undefined;
    } catch {
      return undefined;
    }
  }

  /** A request with the API key; an error status becomes an Error with the server's message. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.apiKey) headers.set("authorization", `Bearer ${this.apiKey}`);
    if (init.body) headers.set("content-type", "application/json");
    const response = await fetch(`${this.url}${path}`, { ...init, headers });
    if (response.ok) return response;
    const text = await response.text();
    let message = text;
    try {
      const body = JSON.parse(text) as { error?: string | { message?: string } };
      message = typeof body.error === "string" ? body.error : (body.error?.message ?? text);
    } catch {
      // not JSON: the text as it is
    }
    if (response.status === 401 && !this.apiKey) message += " (pass --api-key or set LLAMAPORT_API_KEY)";
    throw new ServerError(response.status, `the server at ${this.url} answered ${response.status}: ${message}`);
  }

  async json<T>(path: string, body?: unknown): Promise<T> {
    const response = await this.request(path, body === undefined ? {} : { method: "POST", body: JSON.stringify(body) });
    return (await response.json()) as T;
  }
}

export class ServerError extends Error {
  override name = "ServerError";

  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
