/** Issue-4 measurement: time from writing a plugin file to its new version serving (median of 10). */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { defaultCacheDir } from "../src/config/environment.ts";
import { startLlamaport } from "../src/server/startLlamaport.ts";

const dir = join(process.env.TMPDIR ?? "/tmp", `llamaport-reload-${process.pid}`);
mkdirSync(join(dir, "plugins"), { recursive: true });
await Bun.write(join(dir, "models.yaml"), "models: {}\n");
const server = await startLlamaport({ port: 0, models: join(dir, "models.yaml"), cacheDir: defaultCacheDir(process.env), log: () => {} });
const plugin = (v: number) =>
  `import { definePlugin } from "llamaport";\nexport default definePlugin({ name: "probe", routes: [{ method: "GET", path: "/probe", handler: () => ({ v: ${v} }) }] });\n`;

const times: number[] = [];
for (let v = 1; v <= 11; v++) {
  const started = performance.now();
  await Bun.write(join(dir, "plugins", "probe.ts"), plugin(v));
  for (;;) {
    const response = await fetch(`${server.url}/probe`);
    if (response.status === 200 && ((await response.json()) as { v: number }).v === v) break;
    await Bun.sleep(1);
  }
  if (v > 1) times.push(performance.now() - started); // the first write also creates the file: not a reload
  await Bun.sleep(100);
}
times.sort((a, b) => a - b);
console.log(
  `plugin write -> new version serving: median ${times[5]!.toFixed(0)} ms, min ${times[0]!.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms (10 reloads)`,
);
await server.stop();
rmSync(dir, { recursive: true, force: true });
