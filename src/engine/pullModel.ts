/**
 * `pull`: a source (or a registry name) to a verified GGUF in the cache and an entry in the registry; models.yaml gets
 * the entry when there is one, so the model stays after a restart.
 */
import { readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import { addModelToFile, addModelToYaml, type NewModelEntry } from "../config/addModelEntry.ts";
import { ConfigError, type ModelEntry, type ModelRegistryConfig } from "../config/loadModelsFile.ts";
import { MODEL_NAME_PATTERN, MODEL_NAME_RULE } from "../config/modelsSchema.ts";
import { type DownloadStart, downloadModel } from "./download/downloadModel.ts";
import { isHubSource, isPullSource, modelNameFor, type PullSource, resolvePullSource } from "./download/sources.ts";
import { clip, LlamaportError } from "./EngineError.ts";
import type { ModelRegistry } from "./ModelRegistry.ts";
import { resolveModelSource, type SourceOptions } from "./resolveModelSource.ts";
import type { DownloadProgress, PullRequest, PullResult } from "./types.ts";

export interface PullContext {
  registry: ModelRegistry;
  source: SourceOptions;
  /** The models.yaml new models are added to, and the text it starts from if it does not exist yet; none: they are added to the registry in memory. */
  modelsFile?: { path: string; newText?: string };
  /** Where new models may come from: anywhere (a URL on any server), or only the hub (see `EngineOptions.pullFrom`). */
  pullFrom?: "anywhere" | "hub";
  /** Puts a new registry in force (the engine's `updateRegistry`). */
  apply(config: ModelRegistryConfig): void;
}

/** Registry edits one at a time: two pulls finishing together must not write models.yaml over each other. */
let editing: Promise<unknown> = Promise.resolve();

export async function pullModel(request: PullRequest, context: PullContext): Promise<PullResult> {
  const { registry } = context;
  const report = request.onProgress ?? (() => {});
  const known = registry.find(request.source);
  if (known) {
    if (request.name !== undefined && request.name !== known.name)
      throw new LlamaportError(
        "invalid_request",
        `"${clip(request.source)}" is a model in the registry already: a name is for a new model (rename it in models.yaml)`,
        { param: "name" },
      );
    return fetchKnown(known, request, context);
  }
  if (request.name !== undefined && !new RegExp(MODEL_NAME_PATTERN).test(request.name))
    throw new LlamaportError("invalid_request", `name must be ${MODEL_NAME_RULE}, got "${clip(request.name)}"`, { param: "name" });
  // Before any step is reported, so a caller can answer this one as an error rather than a failed pull.
  if (!isPullSource(request.source))
    throw new LlamaportError(
      "not_found",
      `"${clip(request.source)}" is no model in the registry and no source llamaport can download: pull hf:<owner>/<repo>:<quant> ` +
        "(or Ollama's hf.co/<owner>/<repo>:<quant>), hf:<owner>/<repo>/<file>.gguf or an http(s) URL of a GGUF file",
      { param: "model" },
    );
  if (context.pullFrom === "hub" && !isHubSource(request.source, context.source.hfEndpoint))
    throw new LlamaportError(
      "forbidden",
      `this server pulls new models from Hugging Face only (hf:<owner>/<repo>:<quant>, hf.co/<owner>/<repo>:<quant>), ` +
        `not from "${clip(request.source)}": it listens beyond this machine, and a URL would make it fetch from any ` +
        "server its network reaches. Add the URL to models.yaml as a model's source, or run `llamaport pull` on the server's machine",
      { param: "model" },
    );
  report({ stage: "resolving", source: request.source });
  const resolved = (await resolvePullSource(request.source, { ...context.source, signal: request.signal }))!;
  const same = registry.entries.find((entry) => entry.source === resolved.source);
  const name = request.name ?? same?.name ?? modelNameFor(resolved.fileName);
  const taken = registry.find(name);
  if (taken && taken.source !== resolved.source)
    throw new LlamaportError(
      "invalid_request",
      `the name "${name}" is taken by another model (source ${taken.source}); choose another name for ${resolved.source}`,
      { param: "name" },
    );
  const file = await download(resolved, request, context);
  if (taken) return { ...file, model: taken.name, added: false, savedTo: context.modelsFile?.path };
  report({ stage: "registering", model: name });
  const added = await register(name, resolved, request.source, context);
  return { ...file, model: name, added, savedTo: context.modelsFile?.path };
}

/** A model the registry has: its file is downloaded (or written) if it is not on disk yet. */
async function fetchKnown(entry: ModelEntry, request: PullRequest, context: PullContext): Promise<PullResult> {
  const { callbacks, sha256 } = downloadReports(basename(entry.source), request);
  const path = await resolveModelSource(entry, { ...context.source, signal: request.signal, ...callbacks });
  const sizeBytes = (await stat(path)).size;
  return { model: entry.name, source: entry.source, sizeBytes, sha256: sha256(), added: false, savedTo: context.modelsFile?.path };
}

async function download(resolved: PullSource, request: PullRequest, context: PullContext) {
  const { callbacks, sha256 } = downloadReports(resolved.fileName, request);
  const path = await downloadModel(resolved.source, { ...context.source, signal: request.signal, ...callbacks });
  return { source: resolved.source, sizeBytes: (await stat(path)).size, sha256: sha256() };
}

/** Download callbacks that report pull stages, and the SHA-256 the server announced. */
function downloadReports(file: string, request: PullRequest) {
  const report = request.onProgress ?? (() => {});
  let announced: string | undefined;
  return {
    callbacks: {
      onStart: (start: DownloadStart) => {
        announced = start.sha256;
      },
      onProgress: (progress: DownloadProgress) => report({ stage: "downloading", file, sha256: announced, progress }),
      onVerify: () => report({ stage: "verifying", file, sha256: announced }),
    },
    sha256: () => announced,
  };
}

/**
 * Adds the model to models.yaml (re-read now: it may have been edited) or, without one, to the registry in memory.
 * False when a pull of the same file that finished first has added it already.
 */
function register(name: string, resolved: PullSource, asked: string, context: PullContext): Promise<boolean> {
  const comment = `pulled from ${asked} on ${new Date().toISOString().slice(0, 10)}`;
  const task = editing.then(async () => {
    const there = context.registry.find(name);
    if (there?.source === resolved.source) return false;
    if (there)
      throw new LlamaportError("invalid_request", `the name "${name}" was just taken by another model (source ${there.source})`, {
        param: "name",
      });
    if (context.modelsFile) {
      const { path, newText = "" } = context.modelsFile;
      context.apply(await addToModelsFile(path, newText, { name, source: resolved.source, comment }));
      return true;
    }
    const current = context.registry.current;
    const { config } = addModelToYaml("", { name, source: resolved.source }, current.file);
    context.apply({ ...current, models: [...current.models, ...config.models] });
    return true;
  });
  editing = task.catch(() => {});
  return task;
}

/**
 * The registry with the entry added to models.yaml. A file the server cannot read or write, or one being edited into
 * an invalid state, is the operator's to fix: a clear error (the download stays in the cache), not an internal one.
 */
async function addToModelsFile(path: string, newText: string, entry: NewModelEntry): Promise<ModelRegistryConfig> {
  try {
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return newText;
      throw error;
    });
    return await addModelToFile(path, text, entry);
  } catch (error) {
    const reason = error instanceof ConfigError ? error.message : `${path}: ${(error as Error).message}`;
    throw new LlamaportError(
      "unavailable",
      `${entry.source} is downloaded, but cannot be added to models.yaml as "${entry.name}": ${reason}; fix the file and pull again (the download is kept)`,
      { cause: error },
    );
  }
}
