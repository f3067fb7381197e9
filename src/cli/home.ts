/**
 * Where llamaport looks for its files without being told: models.yaml in the current folder, else beside the
 * executable; `plugins/` beside models.yaml. A compiled binary's "home" is its own folder (drop it somewhere with a
 * models.yaml and plugins/ beside it); from source it is the current folder.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

let binaryFolder: string | undefined;

/** Called by the compiled binary's entry: the folder of the executable is where its files are looked for. */
export function setBinaryFolder(folder: string): void {
  binaryFolder = folder;
}

/** The folder a models.yaml is looked for and written to when none is given or found. */
export function homeFolder(): string {
  return binaryFolder ?? process.cwd();
}

/** ./models.yaml, else one beside the executable (the compiled binary's folder), else none. */
export function findModelsFile(): string | undefined {
  for (const candidate of [join(process.cwd(), "models.yaml"), join(binaryFolder ?? dirname(process.execPath), "models.yaml")])
    if (existsSync(candidate)) return candidate;
  return undefined;
}

/** The models.yaml a command uses: the given one, the one found, or where one would be written. */
export function modelsFilePath(given: string | undefined): { path: string; exists: boolean } {
  if (given) return { path: given, exists: existsSync(given) };
  const found = findModelsFile();
  return found ? { path: found, exists: true } : { path: join(homeFolder(), "models.yaml"), exists: false };
}
