/** `llamaport list`: the registry with each model's file facts, and which models the running server has loaded. */
import { formatBytes, formatParameters, table } from "../format.ts";
import { openLocalEngine } from "../localEngine.ts";
import type { ServeSettings } from "../parseArgs.ts";
import { ServerClient } from "../serverClient.ts";

interface OllamaPs {
  models: { name: string; expires_at?: string }[];
}

export async function list(settings: ServeSettings): Promise<number> {
  await using local = await openLocalEngine(settings);
  const models = await local.engine.listModels();
  const server = await ServerClient.find(settings);
  // The server's loaded models by name (Ollama's /api/ps names them `name:latest`).
  const loaded = server
    ? new Map((await server.json<OllamaPs>("/api/ps")).models.map((m) => [m.name.replace(/:latest$/, ""), m.expires_at]))
    : undefined;
  const rows = models.map((model) => [
    model.name,
    model.sizeBytes === undefined ? "-" : formatBytes(model.sizeBytes),
    model.facts?.quantization ?? "-",
    formatParameters(model.facts?.parameterCount),
    String(model.context),
    !loaded ? "?" : loaded.has(model.name) ? "yes" : "no",
  ]);
  process.stdout.write(table(["NAME", "SIZE", "QUANT", "PARAMS", "CONTEXT", "LOADED"], rows));
  const notes = [`from ${local.modelsFile.exists ? local.modelsFile.path : "the built-in registry (no models.yaml)"}`];
  if (models.some((m) => m.sizeBytes === undefined)) notes.push("SIZE -: not downloaded or written yet (llamaport pull NAME)");
  notes.push(server ? `LOADED: the server at ${server.url}` : `LOADED ?: no server at ${settings.host}:${settings.port}`);
  process.stderr.write(`${notes.join("; ")}\n`);
  return 0;
}
