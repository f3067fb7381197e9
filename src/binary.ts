/** Entry of the compiled binary (called by the entry scripts/build.ts generates): points the engine at the embedded runtime, then runs the CLI. */
import { dirname, join, resolve } from "node:path";
import { setBinaryFolder } from "./cli/home.ts";
import { setNodeLlamaCppLocation } from "./engine/nodeLlamaCpp.ts";
import { defaultCacheDir } from "./config/environment.ts";
import { runtimeEntry, unpackRuntime } from "./runtime/unpackRuntime.ts";

const testBindingScript = "node_modules/node-llama-cpp/dist/bindings/utils/testBindingBinary.js";

export interface EmbeddedRuntime {
  /** Path of the embedded runtime archive (inside the binary's own file system). */
  archive: string;
  /** The runtime's content-derived name: its cache folder. */
  id: string;
}

export async function runBinary(runtime: EmbeddedRuntime): Promise<void> {
  // Absolute, because node-llama-cpp hands the test script's absolute path back to us.
  const cacheDir = resolve(defaultCacheDir(process.env));
  const folder = join(cacheDir, "runtime", runtime.id);
  // On Linux node-llama-cpp first loads llama.cpp in a child it forks with process.execPath (this binary) and its own
  // test script, so a broken binary crashes the child, not the server. Run that script, and only that one.
  const script = process.argv[2];
  if (process.env.TEST_BINDING_CP === "true" && script === join(folder, testBindingScript)) {
    await import(script);
    return;
  }
  setBinaryFolder(dirname(process.execPath));
  // Lazy: the first start unpacks ~50 MB, which must not delay listening (nor run at all for --help / --version).
  setNodeLlamaCppLocation(async () => {
    const { logToProcess } = await import("./server/LogWriter.ts");
    const unpacked = await unpackRuntime({ archive: runtime.archive, id: runtime.id, cacheDir, log: (m) => logToProcess("info", m) });
    return runtimeEntry(unpacked);
  });
  await import("./main.ts");
}
