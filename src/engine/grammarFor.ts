/** Output constraints (JSON mode, JSON Schema, GBNF) as llama.cpp grammars, compiled once per distinct text and shared across requests. */
import type { Llama, LlamaGrammar } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { GenerateOptions } from "./types.ts";

const grammars = new Map<string, Promise<LlamaGrammar>>();

/**
 * Largest JSON Schema (as JSON text) or GBNF grammar taken. Compiling one runs on the event loop and grows faster than
 * its size (measured for a JSON Schema enum: 15,000 characters 37 ms, 31,000 characters 98 ms, 97,000 characters 600 ms).
 */
export const maxGrammarChars = 16_384;

const jsonTypes = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

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
    checkSize("grammar: the GBNF grammar", grammar.length, "grammar");
    return compiled(
      `gbnf:${grammar}`,
      () => llama.createGrammar({ grammar }),
      (error) => `grammar is not a valid GBNF grammar (${error})`,
      "grammar",
    );
  }
  if (format === undefined) return undefined;
  const schema = format === "json" ? undefined : JSON.stringify(format);
  if (schema !== undefined && !grammars.has(`schema:${schema}`)) {
    checkSize("format: the JSON schema", schema.length, "format");
    checkSchemaTypes(format as Record<string, unknown>, "format");
  }
  return compiled(
    schema === undefined ? "json" : `schema:${schema}`,
    () => (format === "json" ? llama.getGrammarFor("json") : llama.createGrammarForJsonSchema(format as never)),
    (error) => `format: unsupported JSON schema: ${error}`,
    "format",
  );
}

/** A JSON Schema's grammar; `param` names the request field it came from (a tool's `tools[i].parameters`) in problems. */
export function schemaGrammar(llama: Llama, schema: Record<string, unknown>, param: string): Promise<LlamaGrammar> {
  const text = JSON.stringify(schema);
  if (!grammars.has(`schema:${text}`)) {
    checkSize(`${param}: the JSON schema`, text.length, param);
    checkSchemaTypes(schema, param);
  }
  return compiled(
    `schema:${text}`,
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

function checkSize(what: string, chars: number, param: string): void {
  if (chars > maxGrammarChars)
    throw new LlamaportError("invalid_request", `${what} is ${chars} characters; at most ${maxGrammarChars} are supported`, { param });
}

/**
 * node-llama-cpp turns a `type` it does not know into `null` without a word: a typo in a schema would silently make
 * the model answer `null`. So every `type` must be a JSON Schema type.
 */
function checkSchemaTypes(schema: Record<string, unknown>, param: string): void {
  const visit = (node: unknown, path: string) => {
    if (Array.isArray(node)) {
      for (const [index, item] of node.entries()) visit(item, `${path}[${index}]`);
      return;
    }
    if (node === null || typeof node !== "object") return;
    for (const [key, value] of Object.entries(node)) {
      // `enum`, `const` and `default` hold data, not schemas: a property there may well be called "type".
      if (key === "enum" || key === "const" || key === "default" || key === "examples") continue;
      const at = path ? `${path}.${key}` : key;
      if (
        key === "type" &&
        !(typeof value === "string" ? jsonTypes.has(value) : Array.isArray(value) && value.every((v) => jsonTypes.has(v)))
      )
        throw new LlamaportError(
          "invalid_request",
          `${param}: ${at} is ${JSON.stringify(value).slice(0, 80)}; a JSON Schema type is one of ${[...jsonTypes].join(", ")} (or a list of them)`,
          { param },
        );
      // Inside `properties`, the keys are property names, which may be anything (even "type").
      if (key === "properties" || key === "$defs" || key === "definitions" || key === "patternProperties") {
        if (value && typeof value === "object") for (const [name, sub] of Object.entries(value)) visit(sub, `${at}.${name}`);
      } else visit(value, at);
    }
  };
  visit(schema, "");
}
