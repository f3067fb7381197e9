/** The one place that imports node-llama-cpp at run time, so the compiled binary can point it at an unpacked runtime folder. */
import type * as NodeLlamaCpp from "node-llama-cpp";
import type { Llama } from "node-llama-cpp";
import { availableParallelism } from "node:os";

export type NodeLlamaCppModule = typeof NodeLlamaCpp;

let modulePromise: Promise<NodeLlamaCppModule> | undefined;
let llamaPromise: Promise<Llama> | undefined;

/**
 * Where node-llama-cpp is imported from. The compiled binary sets this to the entry file of the runtime folder it
 * unpacked, because node-llama-cpp reads its own files relative to its install folder and so cannot be bundled.
 * A function is called at the first import, so the binary can unpack its runtime then, after the server listens.
 */
let moduleSpecifier: string | (() => Promise<string>) = "node-llama-cpp";

export function setNodeLlamaCppLocation(entryFile: string | (() => Promise<string>)): void {
  if (modulePromise || specifierPromise) throw new Error("node-llama-cpp was already imported");
  moduleSpecifier = entryFile;
}

let specifierPromise: Promise<string> | undefined;

/** What node-llama-cpp is imported from (a package name, or the unpacked runtime's entry file), e.g. for a worker thread. */
export function nodeLlamaCppSpecifier(): Promise<string> {
  const specifier = moduleSpecifier;
  specifierPromise ??= typeof specifier === "string" ? Promise.resolve(specifier) : specifier();
  return specifierPromise;
}

export function importNodeLlamaCpp(): Promise<NodeLlamaCppModule> {
  modulePromise ??= nodeLlamaCppSpecifier().then((specifier) => import(specifier)) as Promise<NodeLlamaCppModule>;
  return modulePromise;
}

export interface LlamaRuntimeOptions {
  /** The most threads any model may use; node-llama-cpp's CPU default of 4 is far too many on small machines. */
  maxThreads?: number;
  /** "auto" picks CUDA / Vulkan / Metal when a prebuilt binary for it works, else CPU. */
  gpu?: "auto" | false;
}

/** The process-wide Llama instance, created once. `build: "never"` makes a missing binary a clear error, never a source build. */
export function getLlamaRuntime(options: LlamaRuntimeOptions = {}): Promise<Llama> {
  llamaPromise ??= (async () => {
    const { getLlama, LlamaLogLevel } = await importNodeLlamaCpp();
    return getLlama({
      build: "never",
      gpu: options.gpu ?? "auto",
      maxThreads: options.maxThreads ?? availableParallelism(),
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
    });
  })();
  return llamaPromise;
}
