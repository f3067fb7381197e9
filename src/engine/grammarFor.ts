/** Output constraints (JSON mode, JSON Schema, GBNF) as llama.cpp grammars, compiled once per distinct text and shared across requests. */
import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { GenerateOptions } from "./types.ts";

const grammars = new Map<string, Promise<LlamaGrammar>>();

/** The grammar a request asks for, if any: `format` (JSON or a JSON Schema) or `grammar` (GBNF), not both. */
export async function grammarFor(llama: Llama, request: Pick<GenerateOptions, "format" | "grammar">): Promise<LlamaGrammar | undefined> {
  const { format, grammar } = request;
  if (format !== undefined && grammar !== undefined)
    throw new LlamaportError("invalid_request", "grammar cannot be combined with format (a JSON Schema); send one of them", {
      param: "grammar",
    });
  if (grammar !== undefined) {
    if (typeof grammar !== "string" || grammar.trim() === "")
      throw new LlamaportError("invalid_request", "grammar must be a non-empty GBNF grammar", { param: "grammar" });
    return compiled(
      `gbnf:${grammar}`,
      () => llama.createGrammar({ grammar }),
      (error) => `grammar is not a valid GBNF grammar (${error})`,
      "grammar",
    );
  }
  if (format === undefined) return undefined;
  return compiled(
    format === "json" ? "json" : `schema:${JSON.stringify(format)}`,
    () => (format === "json" ? llama.getGrammarFor("json") : llama.createGrammarForJsonSchema(format as never)),
    (error) => `format: unsupported JSON schema: ${error}`,
    "format",
  );
}

/** A JSON Schema's grammar; `param` names the request field it came from (a tool's `tools[i].parameters`) in problems. */
export function schemaGrammar(llama: Llama, schema: Record<string, unknown>, param: string): Promise<LlamaGrammar> {
  return compiled(
    `schema:${JSON.stringify(schema)}`,
    () => llama.createGrammarForJsonSchema(schema as never),
    (error) => `${param}: unsupported JSON schema: ${error}`,
    param,
  );
}

async function compiled(key: string, create: () => Promise<LlamaGrammar>, problem: (error: string) => string, param: string) {
  let grammar = grammars.get(key);
  if (!grammar) {
    grammar = create();
    // Bounded: a client sending ever-new schemas must not grow memory without limit.
    if (grammars.size >= 64) grammars.delete(grammars.keys().next().value!);
    grammars.set(key, grammar);
    grammar.catch(() => grammars.delete(key));
  }
  try {
    return await grammar;
  } catch (error) {
    throw new LlamaportError("invalid_request", problem((error as Error).message), { param });
  }
}
