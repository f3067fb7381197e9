/** Reads a request's JSON body with a size and a nesting limit, so a huge or deeply nested body is refused before it is parsed. */
import { LlamaportError } from "../engine/EngineError.ts";

/**
 * Deepest nesting of arrays and objects a body may have. Real requests nest a handful of levels (a JSON Schema for
 * structured output a few more); thousands of levels only make recursive code (schema checks, `JSON.stringify`)
 * overflow the stack.
 */
export const maxJsonDepth = 64;

/**
 * Most array items and object members a body may have. Parsing runs on the event loop: ten megabytes of small values
 * (a list of five million numbers) took 300-480 ms to parse here, a hundred thousand take a few. A real request has
 * far fewer: a chat of a thousand messages is a few thousand values, a prompt is one.
 */
export const maxJsonValues = 100_000;

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
  const shape = jsonShape(bytes, maxJsonDepth, maxJsonValues);
  if (shape.depth > maxJsonDepth)
    throw new LlamaportError("invalid_request", `request body is nested more than ${maxJsonDepth} levels deep`);
  if (shape.values > maxJsonValues)
    throw new LlamaportError("invalid_request", `request body has more than ${maxJsonValues} array items and object members`);
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
 * The deepest `[`/`{` nesting and the number of values (commas + 1, a little more than the items and members) in
 * JSON text, counted on the UTF-8 bytes outside strings (every byte that matters is ASCII), stopping as soon as
 * either passes its limit. Strings are skipped with a native search for their closing quote, so a body that is mostly
 * one long prompt costs next to nothing. Malformed text is left to `JSON.parse` to report.
 */
export function jsonShape(bytes: Uint8Array, maxDepth: number, maxValues: number): { depth: number; values: number } {
  let depth = 0;
  let deepest = 0;
  let values = 1;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0x22) {
      i = closingQuote(bytes, i);
      if (i < 0) break;
    } else if (byte === 0x2c) {
      if (++values > maxValues) break;
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) break;
      }
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return { depth: deepest, values };
}

/**
 * Index of the quote that closes the string opened at `open` (one not escaped by a backslash), or -1. Short strings
 * are scanned in place; past 32 bytes a native search jumps ahead (a long prompt is one long string).
 */
function closingQuote(bytes: Uint8Array, open: number): number {
  let at = open + 1;
  for (const end = Math.min(bytes.length, at + 32); at < end; at++) {
    const byte = bytes[at]!;
    if (byte === 0x22) return at;
    if (byte === 0x5c) at++;
  }
  for (;;) {
    const quote = bytes.indexOf(0x22, at);
    if (quote < 0) return -1;
    // Escaped when preceded by an odd run of backslashes; the run started after `at - 1`, which was no escape.
    let backslashes = 0;
    while (quote - 1 - backslashes >= at && bytes[quote - 1 - backslashes] === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return quote;
    at = quote + 1;
  }
}

function tooLarge(maxBytes: number): LlamaportError {
  return new LlamaportError("too_large", `request body is larger than the limit of ${maxBytes} bytes`);
}
