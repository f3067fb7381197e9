/** A model's weights in memory, shared by every context made from them (the model's own and per-request context sizes); freed with the last user. */
import type { Llama, LlamaModel } from "node-llama-cpp";
import type { ModelEntry } from "../config/loadModelsFile.ts";

export class ModelWeights {
  private users = 0;
  private disposed = false;

  private constructor(
    readonly model: LlamaModel,
    /** RAM estimated from the GGUF for the weights alone, for the memory budget. */
    readonly estimatedBytes: number,
  ) {}

  static async load(llama: Llama, entry: ModelEntry, modelPath: string, estimatedBytes: number): Promise<ModelWeights> {
    return new ModelWeights(await llama.loadModel({ modelPath, gpuLayers: entry.gpuLayers }), estimatedBytes);
  }

  /** One more context uses these weights; pair with `release()`. */
  retain(): LlamaModel {
    if (this.disposed) throw new Error("the model's weights were already unloaded");
    this.users++;
    return this.model;
  }

  /** A context is done with the weights; the last one unloads them. */
  async release(): Promise<void> {
    this.users--;
    if (this.users > 0 || this.disposed) return;
    this.disposed = true;
    await this.model.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }
}
