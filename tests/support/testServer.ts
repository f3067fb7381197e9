/** Test support: real servers on random loopback ports, temp folders, and the shared test models (skipped clearly when absent). */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { startLlamaport, type RunningLlamaport, type StartOptions } from "../../src/server/startLlamaport.ts";

const sharedModels = resolve(import.meta.dir, "../../../shared/models");
export const storiesModel = join(sharedModels, "stories260K.gguf");
export const randomLlama2Model = join(sharedModels, "llama-2-tiny-random.gguf");
export const hasSharedModels = existsSync(storiesModel) && existsSync(randomLlama2Model);

/** Call at the top of a file whose tests need ../shared/models; prints why they are skipped. */
export function noteSharedModels(file: string): boolean {
  if (!hasSharedModels) console.warn(`SKIPPING the shared-model tests in ${file}: ${sharedModels} is absent (they need stories260K.gguf).`);
  return hasSharedModels;
}

export function tempDir(prefix = "llamaport-test-"): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** One cache folder per test run, so synthetic models are written once and never into the user's cache. */
export const testCacheDir = join(tmpdir(), `llamaport-test-cache-${process.ppid}`);

export type ModelsSpec = Record<string, Record<string, unknown>>;

/** Writes a models.yaml; tests use 1 thread (fastest for tiny models on this 2-core machine). */
export async function writeModelsYaml(dir: string, models: ModelsSpec, top: Record<string, unknown> = {}): Promise<string> {
  const withThreads = Object.fromEntries(Object.entries(models).map(([name, entry]) => [name, { threads: 1, ...entry }]));
  const file = join(dir, "models.yaml");
  await Bun.write(file, stringify({ ...top, models: withThreads }));
  return file;
}

export interface TestServer extends RunningLlamaport {
  logs: string[];
  dir: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts the real server (real engine, real plugins) on a random loopback port, with its own models.yaml. */
export async function startTestServer(
  models: ModelsSpec,
  options: Partial<StartOptions> & { top?: Record<string, unknown> } = {},
): Promise<TestServer> {
  const dir = tempDir();
  const file = await writeModelsYaml(dir.path, models, options.top);
  // An empty plugins folder beside models.yaml, watched from the start, for tests that drop plugins in.
  mkdirSync(join(dir.path, "plugins"));
  const logs: string[] = [];
  const running = await startLlamaport({
    port: 0,
    models: file,
    cacheDir: testCacheDir,
    log: (level, message) => logs.push(`${level} ${message}`),
    plugins: join(dir.path, "plugins"),
    ...options,
  });
  await running.ready;
  return {
    ...running,
    logs,
    dir: dir.path,
    async [Symbol.asyncDispose]() {
      await running.stop();
      dir[Symbol.dispose]();
    },
  };
}

/** Reads a streamed response body, recording when each chunk arrived. */
export async function readChunks(response: Response): Promise<{ text: string; times: number[] }> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const times: number[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    times.push(performance.now());
    text += decoder.decode(value, { stream: true });
  }
  return { text, times };
}

export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

/** The JSON body of a response, typed loosely for assertions. */
export async function bodyOf(response: Response | Promise<Response>): Promise<any> {
  return (await response).json();
}
