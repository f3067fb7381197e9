/** The closed set of problems the engine and host report, each with its HTTP status; plugins render them in their own wire format. */

export type ProblemCode =
  | "invalid_request"
  | "unauthorized"
  | "forbidden"
  | "too_large"
  | "unsupported_media_type"
  | "not_found"
  | "context_exceeded"
  | "busy"
  | "unavailable"
  | "not_supported"
  | "aborted"
  | "internal";

const statusOf: Record<ProblemCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  too_large: 413,
  unsupported_media_type: 415,
  not_found: 404,
  context_exceeded: 400,
  busy: 503,
  unavailable: 503,
  not_supported: 501,
  // 499 is nginx's "client closed request": nobody reads it, but logs show why the request ended.
  aborted: 499,
  internal: 500,
};

export interface ProblemOptions {
  /**
   * The request field at fault, by its neutral engine name (`maxTokens`, `topP`, `format`) or a plugin's wire name. A
   * message about a field starts with that name ("maxTokens must be ..."), so the host can rename both to the
   * plugin's wire name (`PluginDefinition.fields`).
   */
  param?: string;
  /** Seconds a client should wait before trying again (busy / unavailable). */
  retryAfter?: number;
  /** For `context_exceeded`: the prompt's tokens and the tokens a sequence holds. */
  tokens?: { prompt: number; context: number };
  cause?: unknown;
}

/** An error that knows its problem code and HTTP status. Anything else thrown is reported as `internal`. */
export class LlamaportError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly param?: string;
  readonly retryAfter?: number;
  readonly tokens?: { prompt: number; context: number };

  constructor(code: ProblemCode, message: string, options: ProblemOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LlamaportError";
    this.code = code;
    this.status = statusOf[code];
    this.param = options.param;
    this.retryAfter = options.retryAfter;
    this.tokens = options.tokens;
  }
}

/** A plain description of a problem, as handed to a plugin's `error` hook. */
export interface Problem {
  code: ProblemCode;
  status: number;
  message: string;
  param?: string;
  retryAfter?: number;
  /** For `context_exceeded`: the prompt's tokens and the tokens a sequence holds. */
  tokens?: { prompt: number; context: number };
}

/** Turns anything thrown into a Problem; unknown errors become `internal` without leaking their stack. */
export function toProblem(error: unknown): Problem {
  if (error instanceof LlamaportError)
    return {
      code: error.code,
      status: error.status,
      message: clip(error.message, 2000),
      param: error.param,
      retryAfter: error.retryAfter,
      ...(error.tokens && { tokens: error.tokens }),
    };
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", status: 500, message: clip(`internal error: ${message}`, 2000) };
}

/** Client-sent text quoted in a message, cut short: an error body must not echo a megabyte back. */
export function clip(text: string, max = 100): string {
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
