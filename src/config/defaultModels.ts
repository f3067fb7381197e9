/** The registry used when no models.yaml is found: the offline demo model, so a fresh download serves something at once. */
import { parseModelsYaml, type ModelRegistryConfig } from "./loadModelsFile.ts";

export const defaultModelsYaml = `# Built-in registry: the offline demo model (random weights: its text is random words).
models:
  demo:
    source: synthetic:demo
    aliases: [Meta-Llama-3-8B-Instruct]
    context: 2048
    parallel: 4
    threads: 1
`;

export function defaultModels(): ModelRegistryConfig {
  return parseModelsYaml(defaultModelsYaml, "(built-in models.yaml)");
}
