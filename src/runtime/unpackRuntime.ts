/** Unpacks the node-llama-cpp runtime archive embedded in the binary into a versioned cache folder, once, safely under races and crashes. */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

export interface UnpackOptions {
  /** The archive (.tar.gz of a `node_modules` folder); in a compiled binary a `/$bunfs/...` path only Bun can read. */
  archive: string;
  /** Names the folder; the build derives it from the runtime's content, so a different runtime never reuses it. */
  id: string;
  /** The llamaport cache folder; the runtime goes to `<cacheDir>/runtime/<id>/`. */
  cacheDir: string;
  log?: (message: string) => void;
}

/** Present only in a completely unpacked folder: it is written before the folder gets its final name. */
export const completionMarker = ".llamaport-complete";

/** A temp folder of another machine (or container) this old is a crashed unpack, not a slow one. */
const staleAfterMs = 10 * 60_000;

/**
 * Temp names carry the creator's pid and host, so a start can tell a crashed unpack on this host (pid gone: remove at
 * once) from one in another container sharing the cache folder, where the same pid number means nothing.
 */
export const hostTag = createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
const ownerTag = () => `${process.pid}-${hostTag}-${Math.random().toString(36).slice(2, 10)}`;

/** Where node-llama-cpp's entry file lies inside an unpacked runtime folder. */
export function runtimeEntry(folder: string): string {
  return join(folder, "node_modules", "node-llama-cpp", "dist", "index.js");
}

/**
 * Returns the unpacked runtime folder, unpacking it first if needed. Each process unpacks into its own temp folder
 * and renames it into place; a rename is atomic, so other processes see either nothing or a whole folder. When two
 * start at once both unpack, one rename wins and the other drops its copy. A crash leaves only a temp folder behind,
 * which a later start removes.
 */
export async function unpackRuntime(options: UnpackOptions): Promise<string> {
  const base = join(options.cacheDir, "runtime");
  const folder = join(base, options.id);
  if (existsSync(join(folder, completionMarker))) {
    removeStaleTemps(base);
    return folder;
  }
  mkdirSync(base, { recursive: true });
  removeStaleTemps(base);

  const started = performance.now();
  const temp = join(base, `${options.id}.tmp-${ownerTag()}`);
  mkdirSync(temp);
  try {
    await extract(options.archive, temp);
    writeFileSync(join(temp, completionMarker), `${options.id}\n${new Date().toISOString()}\n`);
    placeFolder(temp, folder);
  } finally {
    // After a successful rename the temp path no longer exists; otherwise this drops a partial or losing copy.
    rmSync(temp, { recursive: true, force: true });
  }
  options.log?.(`node-llama-cpp runtime unpacked to ${folder} in ${Math.round(performance.now() - started)} ms`);
  return folder;
}

function spawnTar(archive: string, into: string) {
  return Bun.spawn(["tar", "-xzf", "-", "--no-same-owner", "-C", into], { stdin: Bun.file(archive), stdout: "ignore", stderr: "pipe" });
}

async function extract(archive: string, into: string): Promise<void> {
  let child: ReturnType<typeof spawnTar>;
  try {
    // Bun.file reads the archive from the binary's embedded file system, which tar itself cannot open.
    child = spawnTar(archive, into);
  } catch (error) {
    throw new Error(`cannot run tar to unpack the llama.cpp runtime (is tar installed?): ${(error as Error).message}`);
  }
  const [code, stderr] = await Promise.all([child.exited, new Response(child.stderr).text()]);
  if (code !== 0) throw new Error(`unpacking the llama.cpp runtime into ${into} failed (tar exited with ${code}): ${stderr.trim()}`);
}

/** Renames the finished temp folder into place, or accepts a complete folder another process placed first. */
function placeFolder(temp: string, folder: string): void {
  for (let attempt = 0; ; attempt++) {
    try {
      renameSync(temp, folder);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" && code !== "ENOTEMPTY" && code !== "EPERM") throw error;
    }
    if (existsSync(join(folder, completionMarker))) return;
    if (attempt >= 2) throw new Error(`cannot place the llama.cpp runtime at ${folder}: a folder there is not a complete runtime`);
    // A folder without the marker was not made by this code (a rename only ever places finished folders): set it aside.
    const aside = `${folder}.broken-${ownerTag()}`;
    try {
      renameSync(folder, aside);
      rmSync(aside, { recursive: true, force: true });
    } catch {
      // Another process moved it first; the next attempt sees what is there now.
    }
  }
}

/** Removes temp folders of crashed unpacks (of any version): their creator is gone. */
function removeStaleTemps(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const match = /\.(?:tmp|broken)-(\d+)-([0-9a-f]{8})-[a-z0-9]+$/.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    const path = join(base, name);
    try {
      const stale = match[2] === hostTag ? pid !== process.pid && !isRunning(pid) : Date.now() - statSync(path).mtimeMs > staleAfterMs;
      if (stale) rmSync(path, { recursive: true, force: true });
    } catch {
      // Gone already, or not ours to remove: leave it.
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
