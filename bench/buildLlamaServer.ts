// Builds the benchmark peer, llama.cpp's `llama-server`, from the exact llama.cpp source node-llama-cpp ships (its git bundle), cached outside the repo.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { defaultCacheDir } from "../src/gguf/syntheticModels.ts";

const repoRoot = resolve(import.meta.dir, "..");
export const bundlePath = join(repoRoot, "node_modules", "node-llama-cpp", "llama", "gitRelease.bundle");

/**
 * CMake options for the peer. node-llama-cpp's prebuilt linux-x64 binary is built in its CI mode with
 * GGML_OPENMP=OFF, GGML_NATIVE=OFF, GGML_CPU_ALL_VARIANTS=ON and GGML_BACKEND_DL=ON, and picks the best CPU variant
 * at run time (e.g. libggml-cpu-sapphirerapids.so on an AVX-512/AMX Xeon). We build one native variant instead of all
 * fourteen (the same instruction sets on this machine, minus ~10x compile time), and match what changes speed:
 * OpenMP off (ggml's own thread pool, like the prebuilt), llamafile sgemm on (default in both), Release.
 * Static libraries so the binary cannot pick up node-llama-cpp's .so files by accident.
 */
export const peerCmakeOptions: readonly string[] = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
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

export interface LlamaServerBuild {
    binary: string;
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
    const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
    ]);
    if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}\n${err.slice(-4000)}\n${out.slice(-2000)}`);
    return out;
}

/** Returns the cached llama-server for the shipped bundle, building it first when missing (many minutes on 2 cores). */
export async function ensureLlamaServer(
    options: { cacheDir?: string; jobs?: number; log?: (line: string) => void } = {},
): Promise<LlamaServerBuild> {
    const log = options.log ?? ((line: string) => console.error(line));
    const cacheDir = options.cacheDir ?? defaultCacheDir();
    if (!existsSync(bundlePath)) throw new Error(`missing ${bundlePath}: is node-llama-cpp installed?`);
    // The hash keys the cache, so an upgraded node-llama-cpp (new bundle) gets a new build instead of a stale peer.
    const bundleHash = (await sha256File(bundlePath)).slice(0, 16);
    const root = join(cacheDir, "llama-server", bundleHash);
    const binary = join(root, "bin", "llama-server");
    const infoPath = join(root, "build-info.json");
    if (existsSync(binary) && existsSync(infoPath)) {
        const info = JSON.parse(await readFile(infoPath, "utf8")) as { commit: string };
        return { binary, commit: info.commit, bundleHash };
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
    await run(["cmake", "-S", src, "-B", build, ...peerCmakeOptions], root, log);
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
    await writeFile(infoPath, JSON.stringify({ commit, cmake: peerCmakeOptions, builtAt: new Date().toISOString() }, null, 2));
    return { binary, commit, bundleHash };
}

if (import.meta.main) {
    const started = performance.now();
    const result = await ensureLlamaServer();
    console.log(`${result.binary} (llama.cpp ${result.commit}) in ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
