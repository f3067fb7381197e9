/** A schema helper for wire formats where `null` means "not given" (OpenAI, Anthropic, Ollama). */
import { type TSchema, Type } from "@sinclair/typebox";

/**
 * An optional field that may also be `null`; the handler sees `null` as `undefined`, so `body.temperature` can go
 * straight to the engine.
 * @example t.Object({ temperature: nullable(t.Number({ minimum: 0, maximum: 2 })) })
 */
export function nullable<T extends TSchema>(schema: T) {
  return Type.Optional(
    Type.Transform(Type.Union([schema, Type.Null()]))
      .Decode((value) => (value === null ? undefined : value))
      .Encode((value) => value ?? null),
  );
}
