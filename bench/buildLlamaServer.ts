// Builds the benchmark peer, llama.cpp's `llama-server`, from the exact llama.cpp source node-llama-cpp ships (its git bundle), cached outside the repo.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

const repoRoot = resolve(import.meta.dir, "..");
/** Bumped when the build recipe (patches, steps) changes, so cached builds from an older recipe are redone. */
const RECIPE_VERSION = 2;
export const bundlePath = join(repoRoot, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");

/**
 * The CPU instruction sets of the ggml CPU variant node-llama-cpp's prebuilt loads on this machine. Its linux-x64
 * binary is built in CI mode (GGML_NATIVE=OFF, GGML_CPU_ALL_VARIANTS=ON, GGML_BACKEND_DL=ON, GGML_OPENMP=OFF) and picks
 * the best variant at run time; on an AVX-512/AMX Xeon that is "sapphirerapids", whose set is listed in llama.cpp's
 * ggml/src/CMakeLists.txt (ggml_add_cpu_backend_variant). Building one variant with exactly these flags gives the
 * peer the same kernels as node-llama-cpp without compiling all fourteen.
 *
 * Not GGML_NATIVE=ON: -march=native also enables instruction sets the variant leaves out (AVX512-FP16, AMX-BF16 on
 * this CPU), so some kernels would differ from the ones node-llama-cpp runs.
 */
export function variantFlags(cpuFlags: string): { name: string; options: string[] } {
  const has = (flag: string) => new RegExp(`\\b${flag}\\b`).test(cpuFlags);
  const on = (...names: string[]) => names.map((n) => `-DGGML_${n}=ON`);
  if (has("amx_int8") && has("amx_tile") && has("avx512_vnni") && has("avx512_bf16") && has("avx512vbmi"))
    return {
      name: "sapphirerapids",
      options: on(
        "SSE42",
        "AVX",
        "F16C",
        "FMA",
        "AVX2",
        "BMI2",
        "AVX512",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX512_BF16",
        "AMX_TILE",
        "AMX_INT8",
      ),
    };
  if (has("avx512f") && has("avx512_vnni") && has("avx512vbmi"))
    return { name: "icelake", options: on("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI", "AVX512_VNNI") };
  if (has("avx512f")) return { name: "skylakex", options: on("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512") };
  if (has("avx2") && has("fma")) return { name: "haswell", options: on("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2") };
  // Anything older: let ggml target the build machine; it is a fallback, not a matched comparison.
  return { name: "native", options: ["-DGGML_NATIVE=ON"] };
}

function cpuFlags(): string {
  try {
    return /^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "";
  } catch {
    return "";
  }
}

/**
 * CMake options for the peer: the variant's instruction sets, OpenMP off (ggml's own thread pool, like the prebuilt),
 * llamafile sgemm on (default in both), Release, and static libraries so the binary cannot pick up node-llama-cpp's
 * .so files by accident.
 */
export function peerCmakeOptions(): { variant: string; options: string[] } {
  const variant = variantFlags(cpuFlags());
  const options = [
    "-DCMAKE_BUILD_TYPE=Release",
    ...(variant.name === "native" ? [] : ["-DGGML_NATIVE=OFF"]),
    ...variant.options,
    "-DGGML_OPENMP=OFF",
    "-DGGML_LLAMAFILE=ON",
    "-DGGML_CCACHE=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
  ];
  return { variant: variant.name, options };
}

export interface LlamaServerBuild {
  binary: string;
  /** ggml CPU variant whose flags the build used (see variantFlags). */
  variant: string;
  cmakeOptions: string[];
  /** Source changes applied on top of the bundle (see applyPatches). */
  patches: string[];
  /** Commit the bundle's HEAD points at: the llama.cpp source of both sides of the benchmark. */
  commit: string;
  bundleHash: string;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

async function run(cmd: string[], cwd: string, log: (line: string) => void): Promise<string> {
  log(`$ ${cmd.join(" ")}`);
  // nice 19: the machine has 2 shared cores; the build must not starve other people's work.
  const proc = Bun.spawn(["nice", "-n", "19", ...cmd], { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}\n${err.slice(-4000)}\n${out.slice(-2000)}`);
  return out;
}

const AMX_TILE_CONFIG_LOAD = "    _tile_loadconfig(&tc);";
const AMX_WORKAROUND =
  "    // llamaport bench: GCC 12 does not model ldtilecfg as reading memory and drops the stores to tc above,\n" +
  "    // loading an all-zero tile config (then SIGILL at the first tilezero). The barrier keeps the stores.\n" +
  '    __asm__ __volatile__("" : : "r"(&tc) : "memory");\n' +
  AMX_TILE_CONFIG_LOAD;

/**
 * Source changes on top of the bundle, by name (recorded in build-info.json):
 * - node-llama-cpp's own patches (llama/patches/*.diff), which it applies when it builds llama.cpp itself;
 * - a compiler workaround, not a behaviour change: this machine's GCC 12.2 miscompiles ggml's AMX tile-config load.
 *   node-llama-cpp's prebuilt, made with another compiler, runs those AMX kernels fine here, so the peer needs them
 *   working too rather than switched off.
 */
async function applyPatches(src: string, log: (line: string) => void): Promise<string[]> {
  const applied: string[] = [];
  const patchesDir = join(repoRoot, "node_modules", "node-llama-cpp", "llama", "patches");
  const patchFiles = existsSync(patchesDir) ? (await readdir(patchesDir)).filter((f) => f.endsWith(".diff")).sort() : [];
  for (const file of patchFiles) {
    const path = join(patchesDir, file);
    if (await succeeds(["git", "apply", "--reverse", "--check", path], src)) {
      applied.push(file);
      continue;
    }
    if (await succeeds(["git", "apply", "--check", path], src)) {
      await run(["git", "apply", path], src, log);
      applied.push(file);
    } else log(`node-llama-cpp patch ${file} does not apply to this source; skipped (node-llama-cpp skips it too then)`);
  }
  const mmq = join(src, "ggml", "src", "ggml-cpu", "amx", "mmq.cpp");
  if (existsSync(mmq)) {
    const text = await readFile(mmq, "utf8");
    if (text.includes(AMX_WORKAROUND)) applied.push("amx-tile-config-barrier");
    else if (text.split(AMX_TILE_CONFIG_LOAD).length === 2) {
      await writeFile(mmq, text.replace(AMX_TILE_CONFIG_LOAD, AMX_WORKAROUND));
      applied.push("amx-tile-config-barrier");
    }
  }
  return applied;
}

async function succeeds(cmd: string[], cwd: string): Promise<boolean> {
  const proc = Bun.spawn(cmd, { cwd, stdout: "ignore", stderr: "ignore" });
  return (await proc.exited) === 0;
}

/** Returns the cached llama-server for the shipped bundle, building it first when missing (many minutes on 2 cores). */
export async function ensureLlamaServer(options: {
  cacheDir: string;
  jobs?: number;
  log?: (line: string) => void;
}): Promise<LlamaServerBuild> {
  const log = options.log ?? ((line: string) => console.error(line));
  const { cacheDir } = options;
  if (!existsSync(bundlePath)) throw new Error(`missing ${bundlePath}: is node-llama-cpp installed?`);
  // The hash keys the cache, so an upgraded node-llama-cpp (new bundle) gets a new build instead of a stale peer.
  const bundleHash = (await sha256File(bundlePath)).slice(0, 16);
  const root = join(cacheDir, "llama-server", bundleHash);
  const binary = join(root, "bin", "llama-server");
  const infoPath = join(root, "build-info.json");
  const { variant, options: cmake } = peerCmakeOptions();
  if (existsSync(binary) && existsSync(infoPath)) {
    const info = JSON.parse(await readFile(infoPath, "utf8")) as { commit: string; cmake?: string[]; patches?: string[]; recipe?: number };
    // Same source, options and recipe: reuse. Otherwise (a changed recipe, another CPU) rebuild in place, which
    // only recompiles what changed.
    if (JSON.stringify(info.cmake) === JSON.stringify(cmake) && info.recipe === RECIPE_VERSION)
      return { binary, commit: info.commit, bundleHash, variant, cmakeOptions: cmake, patches: info.patches ?? [] };
  }

  const src = join(root, "src");
  const build = join(root, "build");
  await mkdir(root, { recursive: true });
  if (!existsSync(join(src, ".git"))) {
    await rm(src, { recursive: true, force: true });
    // The bundle carries one detached HEAD (the release node-llama-cpp pinned); clone checks it out.
    await run(["git", "clone", "--quiet", bundlePath, src], root, log);
  }
  const commit = (await run(["git", "rev-parse", "HEAD"], src, log)).trim();
  const patches = await applyPatches(src, log);
  await run(["cmake", "-S", src, "-B", build, ...cmake], root, log);
  const jobs = String(options.jobs ?? 2);
  await run(["cmake", "--build", build, "--config", "Release", "--target", "llama-server", "-j", jobs], root, log);

  const built = join(build, "bin", "llama-server");
  if (!existsSync(built)) throw new Error(`build finished but ${built} is missing`);
  await mkdir(join(root, "bin"), { recursive: true });
  // Copy-then-rename so a concurrent reader never sees a half-written binary.
  const tmp = `${binary}.tmp-${process.pid}`;
  await Bun.write(tmp, Bun.file(built));
  await run(["chmod", "+x", tmp], root, log);
  await rename(tmp, binary);
  await writeFile(
    infoPath,
    JSON.stringify({ commit, variant, cmake, patches, recipe: RECIPE_VERSION, builtAt: new Date().toISOString() }, null, 2),
  );
  return { binary, commit, bundleHash, variant, cmakeOptions: cmake, patches };
}

if (import.meta.main) {
  const started = performance.now();
  const { defaultCacheDir } = await import("../src/config/environment.ts");
  const result = await ensureLlamaServer({ cacheDir: defaultCacheDir(process.env) });
  console.log(
    `${result.binary} (llama.cpp ${result.commit}, ${result.variant} flags) in ${((performance.now() - started) / 1000).toFixed(0)} s`,
  );
}
