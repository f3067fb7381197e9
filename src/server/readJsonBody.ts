/** Reads a request's JSON body with a size and a nesting limit, so a huge or deeply nested body is refused before it is parsed. */
import { LlamaportError } from "../engine/EngineError.ts";

/**
 * Deepest nesting of arrays and objects a body may have. Real requests nest a handful of levels (a JSON Schema for
 * structured output a few more); thousands of levels only make recursive code (schema checks, `JSON.stringify`)
 * overflow the stack.
 */
export const maxJsonDepth = 64;

export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body) {
      size += chunk.byteLength;
      if (size > maxBytes) throw tooLarge(maxBytes);
      chunks.push(chunk);
    }
  }
  const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  if (nestingDepth(bytes, maxJsonDepth) > maxJsonDepth)
    throw new LlamaportError("invalid_request", `request body is nested more than ${maxJsonDepth} levels deep`);
  const text = new TextDecoder().decode(bytes);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new LlamaportError(
      "invalid_request",
      text.trim() === "" ? "request body is empty; expected a JSON object" : `malformed JSON in request body: ${(error as Error).message}`,
    );
  }
}

/**
 * The deepest `[`/`{` nesting in JSON text, counted on the UTF-8 bytes outside strings (every byte that matters is
 * ASCII), stopping as soon as it passes `stopAbove`. Strings are skipped with a native search for their closing quote,
 * so a body that is mostly one long prompt costs next to nothing. Malformed text is left to `JSON.parse` to report.
 */
export function nestingDepth(bytes: Uint8Array, stopAbove: number): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0x22) {
      i = closingQuote(bytes, i);
      if (i < 0) break;
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > stopAbove) break;
      }
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return deepest;
}

/** Index of the quote that closes the string opened at `open` (one not escaped by an odd run of backslashes), or -1. */
function closingQuote(bytes: Uint8Array, open: number): number {
  let at = open;
  for (;;) {
    at = bytes.indexOf(0x22, at + 1);
    if (at < 0) return -1;
    let backslashes = 0;
    while (bytes[at - 1 - backslashes] === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return at;
  }
}

function tooLarge(maxBytes: number): LlamaportError {
  return new LlamaportError("too_large", `request body is larger than the limit of ${maxBytes} bytes`);
}
