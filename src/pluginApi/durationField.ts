/** Duration fields of requests (Ollama's keep_alive) in milliseconds, with a 400 naming the field when malformed. */
import { parseDuration } from "../config/duration.ts";
import { LlamaportError } from "../engine/EngineError.ts";

/**
 * "5m", "1h30m", "250ms" or a number of seconds, in milliseconds; negative means forever (-1); undefined stays undefined.
 * @example keepAliveMs: durationField(body.keep_alive, "keep_alive")
 */
export function durationField(value: string | number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  try {
    return parseDuration(value);
  } catch (error) {
    throw new LlamaportError("invalid_request", `${field}: ${(error as Error).message}`, { param: field });
  }
}
