/** Reads engine options out of a wire body through the same field table a plugin declares for its error messages. */
import type { GenerateOptions } from "../engine/types.ts";

/** Neutral engine option names mapped to dotted wire paths, e.g. `{ topP: "top_p" }` or `{ topP: "options.top_p" }`. */
export type FieldTable = Partial<Record<keyof GenerateOptions, string>> & Record<string, string>;

/**
 * Every option of `fields` that the body sets, under its engine name; unset and null fields are left out. The body was
 * checked against the route's schema, so values have the wire types, which for these options are the engine's types.
 * @example engine.chat({ ...readFields(body, fields), model: body.model, messages, signal })
 */
export function readFields(body: unknown, fields: FieldTable): Partial<GenerateOptions> {
  const options: Record<string, unknown> = {};
  for (const [name, path] of Object.entries(fields)) {
    let value: unknown = body;
    for (const key of path.split("."))
      value = value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
    if (value !== undefined && value !== null) options[name] = value;
  }
  return options as Partial<GenerateOptions>;
}
