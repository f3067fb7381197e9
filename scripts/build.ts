/** `npm run build [-- --target T]`: compiles llamaport into one executable with the node-llama-cpp runtime embedded as an archive. */
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

const root = resolve(import.meta.dir, "..");

interface Target {
  /** Bun's `--target` for `--compile`. */
  bun: string;
  /**
   * The `@node-llama-cpp/*` prebuilt-binary packages put in the runtime: they decide CPU / CUDA / Vulkan / Metal.
   * GPU variants keep the CPU package too, so `gpu: "auto"` still has a fallback on a machine without that GPU.
   */
  packages: string[];
  /** npm's `os` and `cpu` names, to leave out optional native packages made for other platforms. */
  os: string;
  cpu: string;
  /** What the binary runs on, for the build log. */
  note: string;
}

export const targets: Record<string, Target> = {
  "linux-x64": { bun: "bun-linux-x64", packages: ["linux-x64"], os: "linux", cpu: "x64", note: "CPU" },
  "linux-x64-cuda": {
    bun: "bun-linux-x64",
    packages: ["linux-x64-cuda", "linux-x64-cuda-ext", "linux-x64"],
    os: "linux",
    cpu: "x64",
    note: "CUDA, CPU fallback",
  },
  "linux-x64-vulkan": {
    bun: "bun-linux-x64",
    packages: ["linux-x64-vulkan", "linux-x64"],
    os: "linux",
    cpu: "x64",
    note: "Vulkan, CPU fallback",
  },
  "linux-arm64": { bun: "bun-linux-arm64", packages: ["linux-arm64"], os: "linux", cpu: "arm64", note: "CPU" },
  "darwin-arm64": { bun: "bun-darwin-arm64", packages: ["mac-arm64-metal"], os: "darwin", cpu: "arm64", note: "Metal" },
  "darwin-x64": { bun: "bun-darwin-x64", packages: ["mac-x64"], os: "darwin", cpu: "x64", note: "CPU" },
};

/** Files nobody reads at run time: llama.cpp's git bundle (source builds only), chat templates for users, types, maps, docs. */
function pruned(packageName: string, pathInPackage: string): boolean {
  const p = pathInPackage.split(sep).join("/");
  if (packageName === "node-llama-cpp" && (p === "llama/gitRelease.bundle" || p.startsWith("templates/"))) return true;
  if (/\.(map|d\.ts|d\.mts|d\.cts|md|markdown)$/i.test(p)) return !/^license/i.test(p.split("/").pop()!);
  return /^(docs?|\.github)\//.test(p);
}

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  os?: string[];
  cpu?: string[];
}

function readPackageJson(dir: string): PackageJson {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;
}

/** Node's lookup: `<dir>/node_modules/<name>`, then each parent's, up to the project root. */
function resolvePackage(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === root || dirname(dir) === dir) return undefined;
  }
}

/** npm's rule: a listed `os` / `cpu` must include the platform (a leading "!" excludes it). */
function runsOn(pkg: PackageJson, target: Target): boolean {
  const allows = (list: string[] | undefined, value: string) =>
    !list || list.length === 0 || (list.some((v) => !v.startsWith("!")) ? list.includes(value) : !list.includes(`!${value}`));
  return allows(pkg.os, target.os) && allows(pkg.cpu, target.cpu);
}

/**
 * node-llama-cpp plus everything it can import at run time, as package folders. Platform packages are left out here:
 * the target picks them. Optional peers (typescript, 20 MB) are left out. Required dependencies that are missing fail
 * the build instead of the binary; optional native packages for other platforms are skipped.
 */
function dependencyClosure(entry: string, target: Target): string[] {
  const seen = new Set<string>([entry]);
  const queue = [entry];
  while (queue.length > 0) {
    const dir = queue.shift()!;
    const pkg = readPackageJson(dir);
    const optionalPeers = new Set(
      Object.entries(pkg.peerDependenciesMeta ?? {})
        .filter(([, m]) => m.optional)
        .map(([n]) => n),
    );
    const wanted: [string, boolean][] = [
      ...Object.keys(pkg.dependencies ?? {}).map((n): [string, boolean] => [n, true]),
      ...Object.keys(pkg.optionalDependencies ?? {}).map((n): [string, boolean] => [n, false]),
      ...Object.keys(pkg.peerDependencies ?? {})
        .filter((n) => !optionalPeers.has(n))
        .map((n): [string, boolean] => [n, true]),
    ];
    for (const [name, required] of wanted) {
      if (name.startsWith("@node-llama-cpp/")) continue;
      const found = resolvePackage(name, dir);
      if (!found) {
        if (required && !(pkg.optionalDependencies && name in pkg.optionalDependencies))
          throw new Error(`${pkg.name} needs ${name}, which is not installed in node_modules: run npm ci`);
        continue;
      }
      if (!required && !runsOn(readPackageJson(found), target)) continue;
      if (!seen.has(found)) {
        seen.add(found);
        queue.push(found);
      }
    }
  }
  return [...seen];
}

/** Copies one package (not its nested node_modules: those are packages of their own) and hashes what it copied. */
function copyPackage(packageDir: string, stagingRoot: string, hash: ReturnType<typeof createHash>): { files: number; bytes: number } {
  const name = readPackageJson(packageDir).name;
  let files = 0;
  let bytes = 0;
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const from = join(dir, entry.name);
      const inPackage = relative(packageDir, from);
      if (entry.isDirectory()) {
        if (entry.name === "node_modules" && dir === packageDir) continue;
        walk(from);
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        if (pruned(name, inPackage)) continue;
        const to = join(stagingRoot, relative(root, from));
        mkdirSync(dirname(to), { recursive: true });
        copyFileSync(from, to);
        const mode = statSync(from).mode & 0o777;
        chmodSync(to, mode);
        const content = readFileSync(to);
        hash.update(`${relative(root, from)}\0${mode}\0${content.length}\0`).update(content);
        files++;
        bytes += content.length;
      }
    }
  };
  walk(packageDir);
  return { files, bytes };
}

async function run(command: string[], cwd = root): Promise<void> {
  const child = Bun.spawn(command, { cwd, stdout: "inherit", stderr: "inherit" });
  const code = await child.exited;
  if (code !== 0) throw new Error(`${command.join(" ")} exited with ${code}`);
}

function parseTarget(argv: string[]): string {
  let target = "linux-x64";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--target") target = argv[++i] ?? "";
    else if (arg.startsWith("--target=")) target = arg.slice("--target=".length);
    else throw new Error(`unknown argument "${arg}"; usage: npm run build [-- --target ${Object.keys(targets).join("|")}]`);
  }
  if (!(target in targets)) throw new Error(`unknown target "${target}"; known: ${Object.keys(targets).join(", ")}`);
  return target;
}

export async function build(targetName: string): Promise<string> {
  const target = targets[targetName]!;
  const started = performance.now();
  const nlcDir = resolvePackage("node-llama-cpp", root);
  if (!nlcDir) throw new Error("node-llama-cpp is not installed: run npm ci");
  const nlcVersion = readPackageJson(nlcDir).version;
  // Checked first: a binary without its prebuilt llama.cpp would build fine and fail only on the user's machine.
  const platformDirs = platformPackages(targetName, nlcDir, nlcVersion);

  const work = join(root, "dist", ".build", targetName);
  rmSync(work, { recursive: true, force: true });
  const packages = [...dependencyClosure(nlcDir, target), ...platformDirs].sort();
  const runtimeId = `nlc-${nlcVersion}-${targetName}-${stageRuntime(packages, join(work, "runtime"))}`;
  const archive = join(work, "runtime.tar.gz");
  await run(["tar", "-czf", archive, "-C", join(work, "runtime"), "node_modules"]);
  console.log(`runtime archive: ${(statSync(archive).size / 1e6).toFixed(1)} MB (${runtimeId})`);

  const outfile = join(root, "dist", `llamaport-${targetName}`);
  await compile(await writeEntry(work, targetName, runtimeId), target, outfile);
  console.log(
    `built ${relative(root, outfile)} (${target.note}): ${(statSync(outfile).size / 1e6).toFixed(1)} MB in ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return outfile;
}

/** The `@node-llama-cpp/*` prebuilt packages the target needs, each installed and of node-llama-cpp's own version. */
function platformPackages(targetName: string, nlcDir: string, nlcVersion: string): string[] {
  return targets[targetName]!.packages.map((p) => {
    const name = `@node-llama-cpp/${p}`;
    const dir = resolvePackage(name, nlcDir);
    if (!dir)
      throw new Error(
        `target ${targetName} needs ${name}@${nlcVersion}, which is not installed in node_modules: npm installs a ` +
          `platform's prebuilt llama.cpp package only on that platform. Run \`npm ci\` and \`npm run build -- --target ` +
          `${targetName}\` on a ${targetName} machine.`,
      );
    const version = readPackageJson(dir).version;
    if (version !== nlcVersion)
      throw new Error(`${name} is ${version} but node-llama-cpp is ${nlcVersion}; node-llama-cpp ignores a mismatched binary package`);
    return dir;
  });
}

/**
 * Copies the runtime's packages into `staging`, pruned, and returns a hash of what was copied: it names the cache
 * folder, so a rebuild with the same runtime reuses an unpacked one.
 */
function stageRuntime(packages: string[], staging: string): string {
  mkdirSync(staging, { recursive: true });
  const hash = createHash("sha256");
  let files = 0;
  let bytes = 0;
  for (const dir of packages) {
    const copied = copyPackage(dir, staging, hash);
    files += copied.files;
    bytes += copied.bytes;
  }
  console.log(`runtime: ${packages.length} packages, ${files} files, ${(bytes / 1e6).toFixed(1)} MB unpacked`);
  return hash.digest("hex").slice(0, 12);
}

/** The compiled binary's entry module: the runtime archive embedded as a file, handed to src/binary.ts. */
async function writeEntry(work: string, targetName: string, runtimeId: string): Promise<string> {
  const entry = join(work, "entry.ts");
  const binaryModule = relative(work, join(root, "src", "binary.ts"))
    .split(sep)
    .join("/");
  await Bun.write(
    entry,
    `// Generated by scripts/build.ts for target ${targetName}: the compiled binary's entry, with the runtime archive inside.\n` +
      `import archive from "./runtime.tar.gz" with { type: "file" };\n` +
      `import { runBinary } from ${JSON.stringify(binaryModule)};\n\n` +
      `await runBinary({ archive, id: ${JSON.stringify(runtimeId)} });\n`,
  );
  return entry;
}

async function compile(entry: string, target: Target, outfile: string): Promise<void> {
  await run([
    process.execPath,
    "build",
    entry,
    // Worker threads are separate entry points in a compiled binary (src/engine/OffThreadTokenizer.ts starts this one).
    join(root, "src", "engine", "tokenizerWorker.ts"),
    "--compile",
    `--target=${target.bun}`,
    "--external",
    "node-llama-cpp",
    // Without it the binary reads no package.json at run time, so node-llama-cpp's own imports (lifecycle-utils, ...)
    // do not resolve from the unpacked runtime folder.
    "--compile-autoload-package-json",
    // A user's .env, bunfig.toml or tsconfig.json in the working folder must not change how the server runs.
    "--no-compile-autoload-dotenv",
    "--no-compile-autoload-bunfig",
    "--minify-syntax",
    "--outfile",
    outfile,
  ]);
}

if (import.meta.main) {
  try {
    await build(parseTarget(process.argv.slice(2)));
  } catch (error) {
    console.error(`build failed: ${(error as Error).message}`);
    process.exit(1);
  }
}
