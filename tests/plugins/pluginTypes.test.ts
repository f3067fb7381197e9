/** The shipped plugins/llamaport.d.ts matches the plugin API source, and the bundled plugins import nothing but "llamaport". */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { renderTypes, typesPath } from "../../scripts/generateTypes.ts";

test("plugins/llamaport.d.ts is up to date (run `npm run types` after changing src/pluginApi)", async () => {
  expect(readFileSync(typesPath, "utf8")).toBe(await renderTypes());
});

test("bundled plugins import only the llamaport module", () => {
  const dir = join(import.meta.dir, "../../plugins");
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))) {
    const imports = [...readFileSync(join(dir, file), "utf8").matchAll(/from\s+"([^"]+)"/g)].map((m) => m[1]);
    expect({ file, imports: [...new Set(imports)] }).toEqual({ file, imports: ["llamaport"] });
  }
});
