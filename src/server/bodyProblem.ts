/** A request body that fails its route's schema, as a 400 that names the field and what it must be. */
import type { ValueError } from "@sinclair/typebox/errors";
import { describeSchema } from "../config/describeSchema.ts";
import { LlamaportError } from "../engine/EngineError.ts";

/** E.g. `temperature must be a number between 0 and 2 (or null), got "hot"`, with `param: "temperature"`. */
export function bodyProblem(error: ValueError): LlamaportError {
  const param = error.path
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), "");
  const got = error.value === undefined ? "" : `, got ${JSON.stringify(error.value)?.slice(0, 60) ?? String(error.value)}`;
  if (error.value === undefined && param)
    return new LlamaportError("invalid_request", `${param} is required: ${describeSchema(error.schema)}`, { param });
  return new LlamaportError("invalid_request", `${param || "request body"} must be ${describeSchema(error.schema)}${got}`, {
    param: param || undefined,
  });
}
