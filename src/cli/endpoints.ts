/** The endpoints `--help` lists, read from the built-in plugins and the host's own routes, so the list is always the one served. */
import { builtinPlugins } from "../plugins/builtinPlugins.ts";
import { hostPaths } from "../server/buildApp.ts";

export function endpointsHelp(): string {
  const lines = ["Endpoints (built-in plugins; a file of the same name in plugins/ replaces one, other files add routes):"];
  const width = Math.max(...Object.keys(builtinPlugins).map((id) => id.length), "host".length);
  const wrap = (label: string, routes: string[]) => {
    let line = `  ${label.padEnd(width)}  `;
    const indent = " ".repeat(line.length);
    for (const [index, route] of routes.entries()) {
      const piece = `${route}${index < routes.length - 1 ? "," : ""}`;
      if (line.trim().length > label.length && line.length + piece.length + 1 > 118) {
        lines.push(line.trimEnd());
        line = indent;
      }
      line += `${piece} `;
    }
    lines.push(line.trimEnd());
  };
  wrap(
    "host",
    hostPaths.map((path) => `GET ${path}`),
  );
  for (const [id, plugin] of Object.entries(builtinPlugins))
    wrap(
      id,
      plugin.routes.map((route) => {
        const note = "sameAs" in route ? ` (as ${route.sameAs})` : route.when ? ` (with ${route.when.header})` : "";
        return `${route.method} ${route.path}${note}`;
      }),
    );
  return `${lines.join("\n")}\n`;
}
