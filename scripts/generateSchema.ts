// Writes models.schema.json at the repo root from the TypeBox schema, so editors can check and complete models.yaml.
import { join } from "node:path";
import { buildJsonSchema } from "../src/config/modelsSchema.ts";

export { buildJsonSchema };

/** The file's exact text; the test compares against it so a schema change without regenerating is caught. */
export function renderJsonSchema(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}

export const schemaPath = join(import.meta.dir, "..", "models.schema.json");

if (import.meta.main) {
  await Bun.write(schemaPath, renderJsonSchema());
  console.log(`wrote ${schemaPath}`);
}
