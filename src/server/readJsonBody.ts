/** Reads a request's JSON body with a size limit, so a huge body is a 413 before it is buffered whole. */
import { LlamaportError } from "../engine/EngineError.ts";

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
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new LlamaportError(
      "invalid_request",
      text.trim() === "" ? "request body is empty; expected a JSON object" : `malformed JSON in request body: ${(error as Error).message}`,
    );
  }
}

function tooLarge(maxBytes: number): LlamaportError {
  return new LlamaportError("too_large", `request body is larger than the limit of ${maxBytes} bytes`);
}
