/** `llamaport init [DIR]`: writes a commented models.yaml, its schema, and plugins/ with the API's types and an example. */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { initFiles } from "../initFiles.ts";

export async function init(dir: string | undefined, force: boolean): Promise<number> {
  const root = resolve(dir ?? ".");
  const out: string[] = [];
  for (const file of initFiles) {
    const path = join(root, file.path);
    const shown = relative(process.cwd(), path) || path;
    if (existsSync(path) && !force) {
      out.push(`kept     ${shown} (it exists; --force writes over it)`);
      continue;
    }
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, file.text);
    out.push(`wrote    ${shown}: ${file.what}`);
  }
  const where = root === process.cwd() ? "" : ` from ${relative(process.cwd(), root) || root}`;
  out.push(
    "",
    `Next: \`llamaport serve\`${where} serves models.yaml (the offline demo model until you add one: \`llamaport pull hf:<owner>/<repo>:<quant>\`),`,
    "and the plugins in plugins/; edits to either apply while it runs.",
  );
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}
