/**
 * Decodes checked request bodies (runs the schema's transforms, e.g. `nullable()` turning null into undefined),
 * visiting only the parts of a body whose schema has a transform. TypeBox's own Decode copies every object and checks
 * every union member again with its interpreter, whether or not a transform is below: 100 ms for 9,000 chat messages.
 */
import { Kind, KindGuard, type TSchema, TransformKind } from "@sinclair/typebox";
import { HasTransform, TransformDecode } from "@sinclair/typebox/value";

export type Decoder = (value: unknown) => unknown;

const identity: Decoder = (value) => value;

/** A decoder for values that passed `schema`'s check. */
export function compileDecoder(schema: TSchema): Decoder {
  return build(schema) ?? identity;
}

/** undefined when nothing below `schema` transforms. */
function build(schema: TSchema): Decoder | undefined {
  if (!HasTransform(schema, [])) return undefined;
  const own = KindGuard.IsTransform(schema) ? (schema[TransformKind] as { Decode: Decoder }).Decode : undefined;
  const inner = buildInner(schema);
  if (inner === "typebox") return (value) => TransformDecode(schema, [], value);
  if (!own) return inner;
  return inner ? (value) => own(inner(value)) : own;
}

/** Decodes what is inside `schema` (not its own transform); "typebox" where only TypeBox's full decode will do. */
function buildInner(schema: TSchema): Decoder | undefined | "typebox" {
  switch (schema[Kind]) {
    case "Object": {
      if (schema.additionalProperties && typeof schema.additionalProperties === "object" && HasTransform(schema.additionalProperties, []))
        return "typebox";
      const properties = Object.entries(schema.properties as Record<string, TSchema>).flatMap(([key, property]) => {
        const decode = build(property);
        return decode ? [[key, decode] as const] : [];
      });
      if (properties.length === 0) return undefined;
      return (value) => {
        if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
        const input = value as Record<string, unknown>;
        const output: Record<string, unknown> = { ...input };
        for (const [key, decode] of properties) if (input[key] !== undefined) output[key] = decode(input[key]);
        return output;
      };
    }
    case "Array": {
      const item = build(schema.items as TSchema);
      return item && ((value) => (Array.isArray(value) ? value.map(item) : value));
    }
    case "Union":
      // Which member a value matched decides how it decodes: TypeBox works that out.
      return (schema.anyOf as TSchema[]).some((member) => HasTransform(member, [])) ? "typebox" : undefined;
    default:
      return KindGuard.IsTransform(schema) && !hasChildren(schema) ? undefined : "typebox";
  }
}

function hasChildren(schema: TSchema): boolean {
  return ["items", "properties", "anyOf", "allOf", "not", "patternProperties", "additionalProperties"].some((key) => key in schema);
}
