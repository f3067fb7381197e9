/** A model loaded straight into a LoadedModel on one CPU thread, without the engine around it: for decode-level tests and benches. */
import type { ModelEntry } from "../../src/config/loadModelsFile.ts";
import { LoadedModel } from "../../src/engine/LoadedModel.ts";
import { ModelWeights } from "../../src/engine/ModelWeights.ts";
import { getLlamaRuntime, importNodeLlamaCpp } from "../../src/engine/nodeLlamaCpp.ts";

/** The GGUF at `path` as a registry entry would load it (1 thread, no GPU, speculation off) with `entry`'s changes. */
export async function loadOneModel(path: string, entry: Partial<ModelEntry> = {}): Promise<LoadedModel> {
  const nlc = await importNodeLlamaCpp();
  const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
  const full: ModelEntry = {
    name: "model",
    source: path,
    aliases: [],
    context: 256,
    parallel: 1,
    threads: 1,
    gpuLayers: 0,
    chatTemplate: { kind: "auto" },
    keepAliveMs: -1,
    maxQueue: 1,
    speculative: "off",
    defaults: {},
    ...entry,
  };
  return LoadedModel.load(nlc, full, await ModelWeights.load(llama, full, path, 0), { defaultThreads: 1 });
}
