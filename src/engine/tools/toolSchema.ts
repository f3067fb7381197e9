/**
 * Tool parameter schemas (JSON Schema as clients send them) -> the JSON Schema subset node-llama-cpp turns into a
 * grammar (`GbnfJsonSchema`). node-llama-cpp silently turns what it does not know into `null`, `""` or any JSON
 * (anyOf, allOf, `type: ["object", "null"]`, a schema without `type`, `format: "email"`, `$ref: "#/definitions/x"`),
 * so every keyword is looked at here: shape keywords are converted or rejected with a 400 naming their path, value
 * constraints the grammar cannot enforce are dropped (documented in the README), annotations are dropped.
 */
import type { GbnfJsonSchema } from "node-llama-cpp";
import { LlamaportError } from "../EngineError.ts";

type Json = Record<string, unknown>;

/** Keywords that only describe: they change nothing the grammar generates. */
const annotations = new Set([
  "title",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "$anchor",
]);
/**
 * Keywords that narrow a value without changing its shape. The grammar cannot enforce them; OpenAI's non-strict
 * function calling does not either, and common schemas carry them (zod puts safe-integer bounds on every `.int()`),
 * so they are accepted and not enforced rather than refused.
 */
const unenforced = new Set(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern", "uniqueItems"]);
/** String formats node-llama-cpp's grammar knows; any other `format` is an annotation (as JSON Schema defines it). */
const grammarFormats = new Set(["date", "time", "date-time"]);
const keywordsOfType: Record<string, string[]> = {
  string: ["minLength", "maxLength", "format"],
  object: ["properties", "required", "additionalProperties", "minProperties", "maxProperties"],
  array: ["items", "prefixItems", "minItems", "maxItems"],
};
const primitiveTypes = new Set(["string", "number", "integer", "boolean", "null"]);

/** The schema of a tool's parameters, checked and converted; `path` names it in errors (`tools[0].parameters`). */
export function toGbnfJsonSchema(schema: unknown, path: string): GbnfJsonSchema {
  const converted = convert(schema, path);
  if (!("type" in converted) || converted.type !== "object")
    throw schemaError(`${path}.type`, `the parameters of a tool must be an object schema, got ${JSON.stringify(converted.type ?? null)}`);
  return converted as GbnfJsonSchema;
}

export function schemaError(path: string, message: string): LlamaportError {
  return new LlamaportError("invalid_request", `${path}: ${message}`, { param: path });
}

function convert(input: unknown, path: string): Json {
  if (input === true) return anyJson();
  if (!isObject(input)) throw schemaError(path, "must be a JSON Schema object");
  const rest: Json = {};
  for (const [key, value] of Object.entries(input)) if (!annotations.has(key) && !unenforced.has(key)) rest[key] = value;
  const out: Json = {};
  if (typeof rest.description === "string") out.description = rest.description;
  delete rest.description;
  const defs = takeDefinitions(rest, path);
  if (defs) out.$defs = defs;
  return { ...out, ...convertShape(rest, path) };
}

/** `$defs` and `definitions` at this level, converted, under node-llama-cpp's `$defs`. */
function takeDefinitions(s: Json, path: string): Json | undefined {
  const defs: Json = {};
  for (const key of ["$defs", "definitions"]) {
    if (s[key] === undefined) continue;
    if (!isObject(s[key])) throw schemaError(`${path}.${key}`, "must be an object of schemas");
    for (const [name, def] of Object.entries(s[key])) defs[name] = convert(def, `${path}.${key}.${name}`);
    delete s[key];
  }
  return Object.keys(defs).length > 0 ? defs : undefined;
}

function convertShape(s: Json, path: string): Json {
  if (s.$ref !== undefined) return convertRef(s, path);
  if (s.nullable !== undefined) {
    // OpenAPI's `nullable: true`
    const nullable = s.nullable === true;
    delete s.nullable;
    return nullable ? { oneOf: [convertShape(s, path), { type: "null" }] } : convertShape(s, path);
  }
  if (s.allOf !== undefined) {
    if (!Array.isArray(s.allOf) || s.allOf.length !== 1 || !isObject(s.allOf[0]))
      throw schemaError(`${path}.allOf`, "allOf is supported only with a single schema");
    const { allOf, ...siblings } = s;
    return convert({ ...siblings, ...(allOf as Json[])[0] }, path);
  }
  for (const key of ["oneOf", "anyOf"]) {
    if (s[key] === undefined) continue;
    const branches = s[key];
    if (!Array.isArray(branches) || branches.length === 0) throw schemaError(`${path}.${key}`, "must be a non-empty array of schemas");
    const { oneOf, anyOf, ...siblings } = s;
    return { oneOf: branches.map((branch, i) => convert(isObject(branch) ? { ...siblings, ...branch } : branch, `${path}.${key}[${i}]`)) };
  }
  if (s.const !== undefined) return convertLiterals(s, "const", path);
  if (s.enum !== undefined) return convertLiterals(s, "enum", path);
  const type = s.type ?? impliedType(s);
  delete s.type;
  if (type === undefined) {
    rejectRest(s, path);
    return anyJson();
  }
  if (Array.isArray(type)) return convertTypeList(type, s, path);
  return convertTyped(type, s, path);
}

function convertRef(s: Json, path: string): Json {
  const ref = String(s.$ref);
  const local = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
  if (!local) throw schemaError(`${path}.$ref`, `only local references "#/$defs/NAME" are supported, got "${ref}"`);
  delete s.$ref;
  rejectRest(s, path);
  return { $ref: `#/$defs/${local[2]}` };
}

function convertLiterals(s: Json, key: "const" | "enum", path: string): Json {
  const values = key === "const" ? [s.const] : s.enum;
  if (!Array.isArray(values) || values.length === 0) throw schemaError(`${path}.enum`, "must be a non-empty array");
  values.forEach((value, i) => {
    if (value !== null && !["string", "number", "boolean"].includes(typeof value))
      throw schemaError(
        key === "const" ? `${path}.const` : `${path}.enum[${i}]`,
        "only string, number, boolean or null values are supported",
      );
  });
  const { type: _type, const: _const, enum: _enum, ...rest } = s;
  rejectRest(rest, path);
  return key === "const" ? { const: s.const } : { enum: values };
}

/** `type: ["object", "null"]` -> oneOf, each branch with the keywords of its own type. */
function convertTypeList(types: unknown[], s: Json, path: string): Json {
  if (types.length === 0) throw schemaError(`${path}.type`, "must not be empty");
  if (types.every((t) => primitiveTypes.has(t as string)) && Object.keys(s).length === 0) return { type: types };
  const used = new Set<string>();
  const branches = types.map((type, i) => {
    const own = Object.fromEntries(Object.entries(s).filter(([k]) => keywordsOfType[type as string]?.includes(k)));
    for (const k of Object.keys(own)) used.add(k);
    return convert({ ...own, type }, `${path}.type[${i}]`);
  });
  rejectRest(Object.fromEntries(Object.entries(s).filter(([k]) => !used.has(k))), path);
  return { oneOf: branches };
}

function convertTyped(type: unknown, s: Json, path: string): Json {
  switch (type) {
    case "string":
      return convertString(s, path);
    case "number":
    case "integer":
    case "boolean":
    case "null":
      rejectRest(s, path);
      return { type };
    case "object":
      return convertObject(s, path);
    case "array":
      return convertArray(s, path);
    default:
      throw schemaError(`${path}.type`, `unknown type ${JSON.stringify(type)}`);
  }
}

function convertString(s: Json, path: string): Json {
  const { format, minLength, maxLength, ...rest } = s;
  rejectRest(rest, path);
  const out: Json = { type: "string" };
  if (typeof format === "string" && grammarFormats.has(format)) {
    // node-llama-cpp's format strings have no length bounds; the format fixes the length anyway.
    out.format = format;
    return out;
  }
  if (minLength !== undefined) out.minLength = count(minLength, `${path}.minLength`);
  if (maxLength !== undefined) out.maxLength = count(maxLength, `${path}.maxLength`);
  return out;
}

function convertObject(s: Json, path: string): Json {
  const { properties, required, additionalProperties, minProperties, maxProperties, ...rest } = s;
  rejectRest(rest, path);
  const out: Json = { type: "object" };
  if (properties !== undefined) {
    if (!isObject(properties)) throw schemaError(`${path}.properties`, "must be an object of schemas");
    out.properties = Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, convert(v, `${path}.properties.${k}`)]));
  }
  if (required !== undefined) {
    const known = (out.properties as Json | undefined) ?? {};
    if (!Array.isArray(required) || required.some((k) => typeof k !== "string" || !(k in known)))
      throw schemaError(`${path}.required`, "must list names from properties");
    // Kept for the model's documentation; the grammar always generates every listed property.
    out.required = required;
  }
  if (additionalProperties !== undefined)
    out.additionalProperties =
      typeof additionalProperties === "boolean" ? additionalProperties : convert(additionalProperties, `${path}.additionalProperties`);
  if (minProperties !== undefined) out.minProperties = count(minProperties, `${path}.minProperties`);
  if (maxProperties !== undefined) out.maxProperties = count(maxProperties, `${path}.maxProperties`);
  return out;
}

function convertArray(s: Json, path: string): Json {
  const { items, prefixItems, minItems, maxItems, ...rest } = s;
  rejectRest(rest, path);
  const out: Json = { type: "array" };
  // Draft 4 tuples: `items` as an array.
  if (Array.isArray(items)) out.prefixItems = items.map((v, i) => convert(v, `${path}.items[${i}]`));
  else if (items !== undefined && items !== true) out.items = convert(items, `${path}.items`);
  if (prefixItems !== undefined) {
    if (!Array.isArray(prefixItems)) throw schemaError(`${path}.prefixItems`, "must be an array of schemas");
    out.prefixItems = prefixItems.map((v, i) => convert(v, `${path}.prefixItems[${i}]`));
  }
  if (minItems !== undefined) out.minItems = count(minItems, `${path}.minItems`);
  if (maxItems !== undefined) out.maxItems = count(maxItems, `${path}.maxItems`);
  return out;
}

function impliedType(s: Json): string | undefined {
  if (s.properties !== undefined || s.additionalProperties !== undefined || s.required !== undefined) return "object";
  if (s.items !== undefined || s.prefixItems !== undefined) return "array";
  return undefined;
}

/** Any JSON value: node-llama-cpp has no "any" schema (a schema without `type` would become `null`). */
function anyJson(): Json {
  return { oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }] };
}

function rejectRest(s: Json, path: string): void {
  const [key] = Object.keys(s);
  if (key !== undefined) throw schemaError(`${path}.${key}`, `unsupported JSON Schema keyword "${key}"`);
}

function count(value: unknown, path: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) throw schemaError(path, "must be a non-negative integer");
  return value;
}

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
