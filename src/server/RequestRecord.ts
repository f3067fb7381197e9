/** What one HTTP request did, gathered while it runs: the source of its single log line and of the HTTP metrics. */
import { AsyncLocalStorage } from "node:async_hooks";
import type { GenerationSummary } from "../engine/types.ts";

export class RequestRecord {
  /** The route pattern that served it (`/v1/models/:model`); undefined when no route matched. */
  route?: string;
  /** The plugin whose route served it. */
  plugin?: string;
  status = 0;
  /** Why it failed: the problem's message for an error response, or for a stream that ended with an error event. */
  error?: string;
  /** The client went away before the response was complete. */
  disconnected = false;
  /** The model of the last generation or embedding. */
  model?: string;
  promptTokens = 0;
  completionTokens = 0;
  /** Milliseconds from the request's arrival to its first generated token (the earliest, with several generations). */
  firstTokenMs?: number;
  /** Time spent generating after each generation's first token, summed; with `completionTokens` it gives tokens/s. */
  generateMs = 0;
  /** Tokens generated after each generation's first token (the ones `generateMs` covers). */
  tokensAfterFirst = 0;
  /** The response's body ends later than the handler returns (a plugin request: streams end when they end). */
  awaitsBody = false;
  /**
   * What the record waits for before it is complete: the response (status and headers), the end of its body, and
   * each generation still running (a client that disconnects ends the body before the engine has stopped).
   */
  private pending = 2;

  constructor(
    readonly id: string,
    readonly method: string,
    readonly path: string,
    /** performance.now() at arrival. */
    readonly startedAt: number,
    /** Called once, when everything the record waits for has happened. */
    private readonly complete: (record: RequestRecord) => void,
  ) {}

  /** Adds a finished generation: tokens, time to first token, generation speed. */
  addGeneration(summary: GenerationSummary, now = performance.now()): void {
    this.model = summary.model;
    this.promptTokens += summary.promptTokens;
    this.completionTokens += summary.completionTokens;
    if (summary.completionTokens > 0) {
      // The engine's clock: the first token came `generateMs` before the generation ended (which is now).
      const firstTokenMs = now - summary.timings.generateMs - this.startedAt;
      this.firstTokenMs = this.firstTokenMs === undefined ? firstTokenMs : Math.min(this.firstTokenMs, firstTokenMs);
      this.generateMs += summary.timings.generateMs;
      this.tokensAfterFirst += summary.completionTokens - 1;
    }
  }

  addEmbedding(model: string, promptTokens: number): void {
    this.model = model;
    this.promptTokens += promptTokens;
  }

  /** Generated tokens per second after the first token; undefined with fewer than two tokens. */
  get tokensPerSecond(): number | undefined {
    return this.tokensAfterFirst > 0 && this.generateMs > 0 ? (this.tokensAfterFirst * 1000) / this.generateMs : undefined;
  }

  /** One more thing to wait for (a generation started); pair with `settle()`. Nothing once the record is complete. */
  hold(): boolean {
    if (this.pending === 0) return false;
    this.pending++;
    return true;
  }

  /** One thing the record waited for happened (response, end of body, a generation's end); the last completes it. */
  settle(): void {
    if (this.pending === 0) return;
    this.pending--;
    if (this.pending === 0) this.complete(this);
  }
}

const scope = new AsyncLocalStorage<RequestRecord>();

/** Runs `fn` as part of `record`'s request: engine work started inside it reports to that record. */
export function withRequestRecord<T>(record: RequestRecord, fn: () => T): T {
  return scope.run(record, fn);
}

/** The request the current code runs for, if any (generations started by a request report to it). */
export function currentRequestRecord(): RequestRecord | undefined {
  return scope.getStore();
}

/** Characters kept from a client's `x-request-id`: safe in a log line, a JSON string and a header. */
const unsafeIdChars = /[^A-Za-z0-9._~:@/+=-]/g;
export const maxRequestIdLength = 128;

/**
 * The request's id: the client's `x-request-id` (a proxy's or a tracing client's) when it has one, without characters
 * that could forge log lines or headers and cut to 128 characters; otherwise a new random one.
 */
export function requestIdFrom(headers: Headers): string {
  const given = headers.get("x-request-id");
  if (given) {
    const cleaned = given
      .slice(0, maxRequestIdLength * 4)
      .replace(unsafeIdChars, "")
      .slice(0, maxRequestIdLength);
    if (cleaned !== "") return cleaned;
  }
  return crypto.randomUUID().replaceAll("-", "").slice(0, 20);
}
