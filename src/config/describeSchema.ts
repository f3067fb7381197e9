/** Says in words what a TypeBox schema accepts ("an integer between 1 and 8", "\"auto\" or a number"), for error messages. */
import type { TSchema } from "@sinclair/typebox";

/** "expected ..." for a schema: its `errorMessage` where it has one, otherwise built from its type and limits. */
export function expectation(schema: TSchema, words?: Words): string {
  if (typeof schema.errorMessage === "string") return schema.errorMessage;
  return `expected ${describeSchema(schema, words)}`;
}

/** What an object is called: "a mapping of keys to values" in YAML, "an object" in JSON. */
export interface Words {
  object: string;
}

export function describeSchema(schema: TSchema, words: Words = { object: "an object" }): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (Array.isArray(schema.anyOf)) {
    const members = schema.anyOf as TSchema[];
    // Nullable fields (`X | null`) read best as what X is: null is allowed but never what a client meant to send.
    const options = members.filter((s) => s.type !== "null").map((member) => describeSchema(member, words));
    const nullable = options.length < members.length ? " (or null)" : "";
    const joined = options.length > 1 ? `${options.slice(0, -1).join(", ")} or ${options[options.length - 1]}` : (options[0] ?? "null");
    return joined + nullable;
  }
  switch (schema.type) {
    case "integer":
      return `an integer${range(schema)}`;
    case "number":
      return `a number${range(schema)}`;
    case "string":
      return schema.minLength ? "a non-empty string" : "a string";
    case "boolean":
      return "true or false";
    case "array": {
      const items = listOf(schema.items as TSchema | undefined);
      const { minItems, maxItems } = schema as { minItems?: number; maxItems?: number };
      if (maxItems !== undefined)
        return minItems
          ? `${items} of ${minItems} to ${maxItems} items`
          : `${items} of at most ${maxItems} item${maxItems === 1 ? "" : "s"}`;
      return minItems ? `${items} of at least ${minItems} item${minItems === 1 ? "" : "s"}` : items;
    }
    case "object":
      return words.object;
    case "null":
      return "null";
    default:
      return "a valid value";
  }
}

function range(schema: TSchema): string {
  const { minimum, maximum, exclusiveMinimum, exclusiveMaximum } = schema as Record<string, number | undefined>;
  const low = minimum ?? exclusiveMinimum;
  const high = maximum ?? exclusiveMaximum;
  if (low !== undefined && high !== undefined) return ` between ${low} and ${high}`;
  if (minimum !== undefined) return ` >= ${minimum}`;
  if (exclusiveMinimum !== undefined) return ` > ${exclusiveMinimum}`;
  if (maximum !== undefined) return ` <= ${maximum}`;
  if (exclusiveMaximum !== undefined) return ` < ${exclusiveMaximum}`;
  return "";
}

/** "a list of strings", "a list of integers >= 0", "a list of lists of integers >= 0", or just "a list". */
function listOf(items: TSchema | undefined): string {
  switch (items?.type) {
    case "string":
      return "a list of strings";
    case "integer":
    case "number":
      return `a list of ${items.type}s${range(items)}`;
    case "array":
      return `a list of lists (${listOf(items.items as TSchema | undefined).replace(/^a list/, "each a list")})`;
    default:
      return "a list";
  }
}
