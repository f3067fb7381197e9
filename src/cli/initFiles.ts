/**
 * The files `llamaport init` writes, inside the executable: Bun imports them as text, so the compiled binary carries
 * them and a binary-only user gets the same editor types, schema and example as a source checkout.
 */
import modelsYamlText from "../../models.yaml" with { type: "text" };
import modelsSchemaText from "../../models.schema.json" with { type: "text" };
// A link to plugins/llamaport.d.ts under a name TypeScript does not read as declarations (it would declare the
// `llamaport` module twice); Bun imports the text it points to.
import pluginTypesText from "./templates/llamaport.d.ts.txt" with { type: "text" };
import examplePluginText from "./templates/lines.ts" with { type: "text" };

/** TypeScript types these imports by what the files contain; with `type: "text"` they are their text. */
const text = (imported: unknown) => imported as string;

/** A commented models.yaml (the repository's own, with the offline demo model) that names models.schema.json. */
export const modelsYaml = text(modelsYamlText);

export const initFiles: { path: string; text: string; what: string }[] = [
  { path: "models.yaml", text: modelsYaml, what: "the model registry, commented (edit it while the server runs)" },
  { path: "models.schema.json", text: text(modelsSchemaText), what: "its schema: editors validate models.yaml as you type" },
  { path: "plugins/llamaport.d.ts", text: text(pluginTypesText), what: "the plugin API's types, for editors" },
  { path: "plugins/lines.ts", text: text(examplePluginText), what: 'an example plugin: POST /lines {"model": "demo", "say": "hi"}' },
];
