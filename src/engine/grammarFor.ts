/** JSON output constraints as llama.cpp grammars, compiled once per distinct format and shared across requests. */
import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";

const grammars = new Map<string, Promise<LlamaGrammar>>();

export async function grammarFor(llama: Llama, format: "json" | Record<string, unknown>): Promise<LlamaGrammar> {
  const key = format === "json" ? "json" : JSON.stringify(format);
  let grammar = grammars.get(key);
  if (!grammar) {
    grammar = format === "json" ? llama.getGrammarFor("json") : llama.createGrammarForJsonSchema(format as never);
    // Bounded: a client sending ever-new schemas must not grow memory without limit.
    if (grammars.size >= 64) grammars.delete(grammars.keys().next().value!);
    grammars.set(key, grammar);
    grammar.catch(() => grammars.delete(key));
  }
  try {
    return await grammar;
  } catch (error) {
    throw new LlamaportError("invalid_request", `format: unsupported JSON schema: ${(error as Error).message}`, { param: "format" });
  }
}
