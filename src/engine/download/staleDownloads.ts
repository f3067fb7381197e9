/**
 * Temporary download files in the model cache: each process downloads into its own `.download-<pid>` folder, so two
 * servers sharing a cache never write into one file; what a process that died left there is taken over (to resume it)
 * or, after a day, removed.
 */
import { existsSync } from "node:fs";
import { readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";

const stagingPrefix = ".download-";

/** This process's folder for downloads in progress. */
export function stagingFolder(modelsDir: string, pid = process.pid): string {
  return join(modelsDir, `${stagingPrefix}${pid}`);
}

/** Moves the files of `fileNames` (partial `.ipull` files and finished ones) from dead processes' folders into `staging`. */
export async function adoptStaleParts(modelsDir: string, staging: string, fileNames: string[]): Promise<void> {
  const wanted = new Set(fileNames.flatMap((name) => [name, `${name}.ipull`]));
  for (const folder of await deadFolders(modelsDir)) {
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      if (!wanted.has(name) || existsSync(join(staging, name))) continue;
      // Only one process can win a rename; the others find the file gone.
      await rename(join(folder, name), join(staging, name)).catch(() => {});
    }
    await rmdir(folder).catch(() => {}); // only when empty
  }
}

/**
 * Clears what interrupted writers (`kill -9`, a crash) left in the model cache: temp files of the GGUF writer, and
 * partial downloads nobody resumed for a day. Newer ones stay for the next pull or request of that model to resume.
 */
export async function cleanStaleDownloads(cacheDir: string, log: (message: string) => void): Promise<void> {
  const dir = join(cacheDir, "models");
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    // The GGUF writer's temp files (`<file>.tmp-<pid>-<n>`), and part files of llamaport 0.1's own downloader
    // (`<file>.part-<pid>`), which the current downloader cannot resume.
    const match = /\.(tmp|part)-(\d+)(?:-\d+)?$/.exec(name);
    if (!match || isAlive(Number(match[2]))) continue;
    await rm(join(dir, name), { force: true });
    log(`removed ${name} from the model cache (left by a process that is gone)`);
  }
  for (const folder of await deadFolders(dir)) {
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      const info = await stat(join(folder, name)).catch(() => undefined);
      if (!info || info.mtimeMs > dayAgo) continue;
      await rm(join(folder, name), { force: true });
      log(`removed the partial download ${name} from the model cache (untouched for a day, its process is gone)`);
    }
    await rmdir(folder).catch(() => {});
  }
}

async function deadFolders(modelsDir: string): Promise<string[]> {
  const names = await readdir(modelsDir).catch(() => [] as string[]);
  return names
    .filter((name) => name.startsWith(stagingPrefix) && !isAlive(Number(name.slice(stagingPrefix.length))))
    .map((name) => join(modelsDir, name));
}

export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
