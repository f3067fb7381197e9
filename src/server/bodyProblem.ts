/** A request body that fails its route's schema, as a 400 that names the field and what it must be. */
import type { TSchema } from "@sinclair/typebox";
import { type ValueError, ValueErrorType } from "@sinclair/typebox/errors";
import { describeSchema } from "../config/describeSchema.ts";
import { LlamaportError } from "../engine/EngineError.ts";

/** E.g. `temperature must be a number between 0 and 2 (or null), got "hot"`, with `param: "temperature"`. */
export function bodyProblem(first: ValueError): LlamaportError {
  const error = innermost(first);
  const param = error.path
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
  const got = error.value === undefined ? "" : `, got ${preview(error.value)}`;
  if (error.value === undefined && param)
    return new LlamaportError("invalid_request", `${param} is required: ${describeSchema(error.schema)}`, { param });
  return new LlamaportError("invalid_request", `${param || "request body"} must be ${describeSchema(error.schema)}${got}`, {
    param: param || undefined,
  });
}

/**
 * For a union the value is clearly meant as one member of (an object for a nullable object, an array for a list), the
 * error inside that member: `response_format.type must be ...` rather than `response_format must be an object`.
 */
function innermost(error: ValueError): ValueError {
  if (error.type !== ValueErrorType.Union) return error;
  const kind = Array.isArray(error.value) ? "array" : error.value === null ? "null" : typeof error.value;
  const inner = error.errors.map((variant) => variant.First()).filter((e): e is ValueError => e !== undefined);
  const fitting = inner.filter((e) => e.path !== error.path || kindOf(e.schema) === kind);
  const deeper = fitting.filter((e) => e.path !== error.path);
  // Only when exactly one member fits the value's kind and its error lies deeper: otherwise the union's own words.
  return deeper.length === 1 && fitting.length === 1 ? innermost(deeper[0]!) : error;
}

function kindOf(schema: TSchema): string | undefined {
  if (schema.type === "integer") return "number";
  return typeof schema.type === "string" ? schema.type : undefined;
}

/** A short description of a client's value, made without serializing all of it (it may be megabytes). */
function preview(value: unknown): string {
  if (typeof value === "string")
    return value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}… (${value.length} characters)` : JSON.stringify(value);
  if (Array.isArray(value)) return `an array of ${value.length} item${value.length === 1 ? "" : "s"}`;
  if (value !== null && typeof value === "object") return "an object";
  return String(value);
}
