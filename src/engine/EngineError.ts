/** The closed set of problems the engine and host report, each with its HTTP status; plugins render them in their own wire format. */

export type ProblemCode =
  | "invalid_request"
  | "too_large"
  | "not_found"
  | "context_exceeded"
  | "busy"
  | "unavailable"
  | "not_supported"
  | "aborted"
  | "internal";

const statusOf: Record<ProblemCode, number> = {
  invalid_request: 400,
  too_large: 413,
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
  cause?: unknown;
}

/** An error that knows its problem code and HTTP status. Anything else thrown is reported as `internal`. */
export class LlamaportError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly param?: string;
  readonly retryAfter?: number;

  constructor(code: ProblemCode, message: string, options: ProblemOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LlamaportError";
    this.code = code;
    this.status = statusOf[code];
    this.param = options.param;
    this.retryAfter = options.retryAfter;
  }
}

/** A plain description of a problem, as handed to a plugin's `error` hook. */
export interface Problem {
  code: ProblemCode;
  status: number;
  message: string;
  param?: string;
  retryAfter?: number;
}

/** Turns anything thrown into a Problem; unknown errors become `internal` without leaking their stack. */
export function toProblem(error: unknown): Problem {
  if (error instanceof LlamaportError)
    return { code: error.code, status: error.status, message: error.message, param: error.param, retryAfter: error.retryAfter };
  const message = error instanceof Error ? error.message : String(error);
  return { code: "internal", status: 500, message: `internal error: ${message}` };
}
