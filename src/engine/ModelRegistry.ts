/** The models a server offers, from models.yaml: name and alias lookup over the current configuration, swapped whole on reload. */
import type { ModelEntry, ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { clip, LlamaportError } from "./EngineError.ts";

export class ModelRegistry {
  private byName = new Map<string, ModelEntry>();
  private config: ModelRegistryConfig;

  constructor(config: ModelRegistryConfig) {
    this.config = config;
    this.index();
  }

  get current(): ModelRegistryConfig {
    return this.config;
  }

  get entries(): readonly ModelEntry[] {
    return this.config.models;
  }

  /** Swap in a new configuration. */
  replace(config: ModelRegistryConfig): void {
    this.config = config;
    this.index();
  }

  /** The entry for a name or alias, exactly as written in models.yaml. */
  find(name: string): ModelEntry | undefined {
    return this.byName.get(name);
  }

  /** Like `find`, but a missing model is a `not_found` problem that lists what is available. */
  resolve(name: string | undefined): ModelEntry {
    if (!name) throw new LlamaportError("invalid_request", "a model name is required", { param: "model" });
    const entry = this.find(name);
    if (entry) return entry;
    const known = this.config.models.flatMap((m) => [m.name, ...m.aliases]);
    throw new LlamaportError(
      "not_found",
      `model "${clip(name)}" not found; available: ${known.length ? known.join(", ") : "(none configured)"}`,
      { param: "model" },
    );
  }

  private index(): void {
    this.byName = new Map();
    for (const entry of this.config.models) {
      this.byName.set(entry.name, entry);
      for (const alias of entry.aliases) this.byName.set(alias, entry);
    }
  }
}
