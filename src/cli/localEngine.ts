/** An engine in the CLI's own process, over the models.yaml a command uses (or the built-in registry), for pull, run, list and show. */
import { defaultModels } from "../config/defaultModels.ts";
import { loadModelsFile } from "../config/loadModelsFile.ts";
import { Engine } from "../engine/Engine.ts";
import { modelsFilePath } from "./home.ts";
import { modelsYaml } from "./initFiles.ts";
import type { ServeSettings } from "./parseArgs.ts";

export interface LocalEngine {
  engine: Engine;
  /** The models.yaml read (or to be written by `pull`), and whether it exists. */
  modelsFile: { path: string; exists: boolean };
  [Symbol.asyncDispose](): Promise<void>;
}

export async function openLocalEngine(settings: ServeSettings, log: (message: string) => void = () => {}): Promise<LocalEngine> {
  const modelsFile = modelsFilePath(settings.models);
  const config = modelsFile.exists ? await loadModelsFile(modelsFile.path) : defaultModels();
  const engine = new Engine(config, {
    threads: settings.threads,
    cacheDir: settings.cacheDir,
    hfEndpoint: settings.hfEndpoint,
    hfToken: settings.hfToken,
    modelsFile: modelsFile.path,
    // A models.yaml `pull` writes starts as `llamaport init` writes it: commented, with the demo model.
    newModelsFileText: modelsYaml,
    log,
  });
  return { engine, modelsFile, [Symbol.asyncDispose]: () => engine.dispose() };
}
