/** `llamaport ps`: the models the running server has loaded (Ollama's `/api/ps`, as `ollama ps` asks it). */
import { formatBytes, table } from "../format.ts";
import type { ServeSettings } from "../parseArgs.ts";
import { ServerClient } from "../serverClient.ts";

interface OllamaPs {
  models: { name: string; size: number; context_length?: number; expires_at?: string }[];
}

export async function ps(settings: ServeSettings): Promise<number> {
  const server = await ServerClient.find(settings);
  if (!server) {
    process.stderr.write(`llamaport: no llamaport server at ${settings.host}:${settings.port} (start one with \`llamaport serve\`)\n`);
    return 1;
  }
  const { models } = await server.json<OllamaPs>("/api/ps");
  const until = (expires: string | undefined) => {
    if (!expires || new Date(expires).getFullYear() > 2200) return "stays loaded";
    const seconds = Math.round((new Date(expires).getTime() - Date.now()) / 1000);
    return seconds <= 0 ? "now" : `${seconds} s from now`;
  };
  const rows = models.map((m) => [
    m.name.replace(/:latest$/, ""),
    formatBytes(m.size),
    String(m.context_length ?? "-"),
    until(m.expires_at),
  ]);
  process.stdout.write(table(["NAME", "SIZE", "CONTEXT", "UNTIL"], rows));
  return 0;
}
