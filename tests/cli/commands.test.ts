/**
 * The CLI's commands through the real command line (child processes): init, pull (plain lines and a terminal's bar,
 * resumed after a kill), list, ps, show, run (one answer, a chat through a pseudo-terminal, against a running server).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { endpointsHelp } from "../../src/cli/endpoints.ts";
import { ensureSyntheticModel } from "../../src/gguf/syntheticModels.ts";
import { builtinPlugins } from "../../src/plugins/builtinPlugins.ts";
import { hostPaths } from "../../src/server/buildApp.ts";
import { type ModelHub, paddedGguf, startModelHub } from "../support/modelHub.ts";
import { startTestServer, tempDir, testCacheDir } from "../support/testServer.ts";

const root = resolve(import.meta.dir, "../..");
const main = join(root, "src", "main.ts");
const MiB = 1024 ** 2;
let hub: ModelHub;
let gguf: Uint8Array;
let cache: ReturnType<typeof tempDir>;
/** A port where no server listens: commands that look for one find none. */
let freePort: number;
const children: Subprocess[] = [];

beforeAll(async () => {
  gguf = await Bun.file(await ensureSyntheticModel("demo", testCacheDir)).bytes();
  hub = await startModelHub();
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q4_K_M.gguf", { bytes: gguf });
  hub.addRepoFile("acme/tiny-GGUF", "tiny-Q8_0.gguf", { bytes: paddedGguf(gguf, 6 * MiB) });
  cache = tempDir();
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  freePort = probe.port!;
  probe.stop(true);
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  hub?.stop();
  cache?.[Symbol.dispose]();
});

/** The environment of a user with no settings of their own, a cache of the test's, and the test hub as Hugging Face. */
const env = () => ({
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: cache.path,
  LLAMAPORT_CACHE: cache.path,
  LLAMAPORT_HF_ENDPOINT: hub.url,
  LLAMAPORT_PORT: String(freePort),
  HF_TOKEN_PATH: join(cache.path, "no-token"),
});

function spawn(args: string[], cwd: string, extra: Record<string, string> = {}) {
  const child = Bun.spawn([process.execPath, main, ...args], { cwd, env: { ...env(), ...extra }, stdout: "pipe", stderr: "pipe" });
  children.push(child);
  return child;
}

async function llamaport(args: string[], cwd: string, extra: Record<string, string> = {}) {
  const child = spawn(args, cwd, extra);
  const [code, stdout, stderr] = await Promise.all([child.exited, new Response(child.stdout).text(), new Response(child.stderr).text()]);
  return { code, stdout, stderr };
}

/** A command in a pseudo-terminal (`script`), so it sees a TTY; returns its output as it comes and a way to type. */
function inTerminal(args: string[], cwd: string) {
  const command = [process.execPath, main, ...args].map((arg) => `'${arg}'`).join(" ");
  const child = Bun.spawn(["script", "-qfec", command, "/dev/null"], {
    cwd,
    env: { ...env(), TERM: "dumb", COLUMNS: "120" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  children.push(child);
  const session = { output: "" };
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) session.output += decoder.decode(chunk, { stream: true });
  })();
  return {
    child,
    get output() {
      return session.output;
    },
    type(text: string) {
      child.stdin.write(text);
      child.stdin.flush();
    },
    async waitFor(pattern: RegExp, from = 0, timeoutMs = 30_000): Promise<number> {
      for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await Bun.sleep(20)) {
        const match = pattern.exec(session.output.slice(from));
        if (match) return from + match.index + match[0].length;
        if (child.exitCode !== null) break;
      }
      throw new Error(`no ${pattern} in the terminal:\n${session.output.slice(from)}`);
    },
  };
}

describe("help", () => {
  test("each command has --help; the global help lists every route of the built-in plugins and the host", async () => {
    using dir = tempDir();
    for (const command of ["serve", "pull", "run", "list", "ps", "show", "init"]) {
      const { code, stdout } = await llamaport([command, "--help"], dir.path);
      expect(`${command}: ${code}`).toBe(`${command}: 0`);
      expect(stdout).toStartWith(`Usage: llamaport ${command}`);
    }
    expect((await llamaport(["help", "pull"], dir.path)).stdout).toStartWith("Usage: llamaport pull SOURCE");
    const { stdout } = await llamaport(["--help"], dir.path);
    expect(stdout).toContain(endpointsHelp());
    const flat = stdout.replace(/\s+/g, " ");
    for (const path of hostPaths) expect(flat).toContain(`GET ${path}`);
    for (const plugin of Object.values(builtinPlugins))
      for (const route of plugin.routes) expect(flat).toContain(`${route.method} ${route.path}`);
    for (const variable of ["HF_TOKEN", "LLAMAPORT_CACHE", "LLAMAPORT_HF_ENDPOINT", "XDG_CACHE_HOME"]) expect(stdout).toContain(variable);
    const bad = await llamaport(["pull"], dir.path);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toStartWith("llamaport: pull needs a SOURCE\n\nUsage: llamaport pull SOURCE");
    expect((await llamaport(["run", "demo", "--name", "x"], dir.path)).stderr).toStartWith('llamaport: unknown option "--name" for run');
  });
});

describe("init, pull, list, show", () => {
  test("init writes the registry, its schema and plugins/ (types, an example); again it keeps them unless --force", async () => {
    using dir = tempDir();
    const first = await llamaport(["init", "project"], dir.path);
    expect(first.code).toBe(0);
    const project = join(dir.path, "project");
    expect(first.stdout).toContain("wrote    project/models.yaml: the model registry, commented");
    expect(readFileSync(join(project, "models.yaml"), "utf8")).toBe(readFileSync(join(root, "models.yaml"), "utf8"));
    expect(readFileSync(join(project, "models.yaml"), "utf8")).toStartWith("# yaml-language-server: $schema=./models.schema.json\n");
    expect(readFileSync(join(project, "models.schema.json"), "utf8")).toBe(readFileSync(join(root, "models.schema.json"), "utf8"));
    expect(readFileSync(join(project, "plugins", "llamaport.d.ts"), "utf8")).toBe(
      readFileSync(join(root, "plugins", "llamaport.d.ts"), "utf8"),
    );
    expect(readFileSync(join(project, "plugins", "lines.ts"), "utf8")).toContain(
      'import { definePlugin, frames, ndjson, route, t, TEXT, template } from "llamaport";',
    );
    writeFileSync(join(project, "models.yaml"), "# mine\nmodels: {}\n");
    const again = await llamaport(["init", "project"], dir.path);
    expect(again.stdout).toContain("kept     project/models.yaml (it exists; --force writes over it)");
    expect(readFileSync(join(project, "models.yaml"), "utf8")).toBe("# mine\nmodels: {}\n");
    await llamaport(["init", "project", "--force"], dir.path);
    expect(readFileSync(join(project, "models.yaml"), "utf8")).toStartWith("# yaml-language-server");
  });

  test("pull (not on a terminal): plain progress lines, a verified model added to models.yaml with every other line kept; list and show it", async () => {
    using dir = tempDir();
    await llamaport(["init"], dir.path);
    const before = readFileSync(join(dir.path, "models.yaml"), "utf8");
    const { code, stdout, stderr } = await llamaport(["pull", "hf:acme/tiny-GGUF:Q8_0"], dir.path);
    expect(`${code}\n${stderr}`).toStartWith("0\n");
    expect(stdout).toMatch(
      new RegExp(
        `^tiny-Q8_0 \\(6 MiB, SHA-256 [0-9a-f]{12}… verified\\) from hf:acme/tiny-GGUF:Q8_0: added to ${join(dir.path, "models.yaml")}\nrun it: llamaport run tiny-Q8_0\n$`,
      ),
    );
    const lines = stderr.trim().split("\n");
    expect(lines[0]).toBe("resolving hf:acme/tiny-GGUF:Q8_0");
    expect(lines.some((line) => /^downloading tiny-Q8_0\.gguf: \d+% of 6 MiB/.test(line))).toBe(true);
    expect(lines.at(-2)).toMatch(/^verifying tiny-Q8_0\.gguf \(GGUF structure, SHA-256 [0-9a-f]{12}…\)$/);
    expect(lines.at(-1)).toBe("adding tiny-Q8_0 to the registry");
    expect(stderr).not.toContain("\r");
    const after = readFileSync(join(dir.path, "models.yaml"), "utf8");
    const added = `  # pulled from hf:acme/tiny-GGUF:Q8_0 on ${new Date().toISOString().slice(0, 10)}\n  tiny-Q8_0:\n    source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf\n`;
    const at = before.indexOf("\n  # A real model") + 1;
    expect(after).toBe(`${before.slice(0, at - 1)}${added}\n${before.slice(at)}`);

    const list = await llamaport(["list"], dir.path);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+SIZE\s+QUANT\s+PARAMS\s+CONTEXT\s+LOADED\n/);
    // The demo model is written on first use: not yet.
    expect(list.stdout).toMatch(/\ndemo\s+-\s+-\s+-\s+2048\s+\?\n/);
    expect(list.stdout).toMatch(/\ntiny-Q8_0\s+6 MiB\s+Q8_0\s+202K\s+4096\s+\?\n/);
    expect(list.stderr).toContain("SIZE -: not downloaded or written yet (llamaport pull NAME)");
    expect(list.stderr).toContain(`LOADED ?: no server at 127.0.0.1:${freePort}`);
    const show = await llamaport(["show", "tiny-Q8_0"], dir.path);
    expect(show.stdout).toContain("    source            hf:acme/tiny-GGUF/tiny-Q8_0.gguf\n");
    expect(show.stdout).toContain("    architecture      llama\n");
    expect(show.stdout).toContain("  Capabilities\n    completion\n");
    const missing = await llamaport(["show", "nope"], dir.path);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('llamaport: model "nope" not found; available: demo, Meta-Llama-3-8B-Instruct, tiny-Q8_0\n');
    const library = await llamaport(["pull", "llama3.2:1b"], dir.path);
    expect(library.code).toBe(1);
    expect(library.stderr).toContain('"llama3.2:1b" is no model in the registry and no source llamaport can download');
  });

  test("pull on a terminal draws one progress line with a bar, size, speed and time left", async () => {
    using dir = tempDir();
    hub.addRepoFile("acme/slow-GGUF", "slow-Q4_K_M.gguf", { bytes: paddedGguf(gguf, 8 * MiB), bytesPerSecond: 8 * MiB });
    const terminal = inTerminal(["pull", "hf:acme/slow-GGUF"], dir.path);
    expect(await terminal.child.exited).toBe(0);
    // Redrawn in place: carriage returns, and no line per update.
    const drawn = terminal.output.split("\r").filter((piece) => piece.startsWith("slow-Q4_K_M.gguf "));
    expect(drawn.length, JSON.stringify(drawn)).toBeGreaterThan(2);
    expect(
      drawn.some((piece) => /^slow-Q4_K_M\.gguf +\d+% +\[█*░*\] +[\d.]+ (KiB|MiB) \/ 8 MiB +[\d.]+ (KiB|MiB)\/s +\d+s left/.test(piece)),
      JSON.stringify(drawn),
    ).toBe(true);
    expect(drawn.filter((piece) => piece.includes("100%"))).toHaveLength(1);
    expect(terminal.output).toContain("slow-Q4_K_M (8 MiB, SHA-256");
  });

  test("a pull killed mid-download is resumed by the next pull, which asks only for what is missing", async () => {
    using dir = tempDir();
    let stalled!: () => void;
    const stalling = new Promise<void>((resolve) => (stalled = resolve));
    let stalls = 0;
    hub.addRepoFile("acme/big-GGUF", "big-Q4_K_M.gguf", {
      bytes: paddedGguf(gguf, 20 * MiB),
      // At 16 MiB the first time: silence, until the test kills the pull.
      fault: ({ ranged, start, end }) => {
        if (!ranged || start > 16 * MiB || end <= 16 * MiB || stalls++ > 0) return undefined;
        setTimeout(stalled, 300); // let the finished chunks' resume records reach the disk
        return { stallAfter: 16 * MiB - start };
      },
    });
    const first = spawn(["pull", "hf:acme/big-GGUF"], dir.path);
    await stalling;
    first.kill("SIGKILL");
    expect(await first.exited).not.toBe(0);
    const mark = hub.requests.length;
    const second = await llamaport(["pull", "hf:acme/big-GGUF"], dir.path);
    expect(`${second.code}\n${second.stderr}`).toStartWith("0\n");
    const ranges = hub.requests.slice(mark).flatMap((r) => (r.path.includes("big-Q4_K_M") && r.range ? [r.range] : []));
    expect(ranges).toEqual([`bytes=${15 * MiB}-${20 * MiB - 1}`]);
    expect(second.stdout).toStartWith("big-Q4_K_M (20 MiB, SHA-256");
  });
});

describe("run", () => {
  const modelsYaml =
    "models:\n  demo:\n    source: synthetic:demo\n    context: 2048\n    parallel: 1\n    threads: 1\n    defaults: { max_tokens: 8 }\n";

  test("one answer in this process (no server): streamed to stdout; --verbose adds the counts", async () => {
    using dir = tempDir();
    writeFileSync(join(dir.path, "models.yaml"), modelsYaml);
    const { code, stdout, stderr } = await llamaport(["run", "demo", "tell", "me", "a", "joke", "--verbose"], dir.path);
    expect(`${code}\n${stderr}`).toMatch(/^0\nprompt: \d+ tokens \(0 cached\); answer: 8 tokens in [\d.]+ s/);
    expect(stdout.trim().split(/\s+/).length).toBeGreaterThan(2);
    const unknown = await llamaport(["run", "nope", "hi"], dir.path);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('llamaport: model "nope" not found; available: demo\n');
  });

  test("an answer piped into a reader that stops early (`| head`) ends quietly with 0, not a stack trace", async () => {
    using dir = tempDir();
    writeFileSync(join(dir.path, "models.yaml"), modelsYaml.replace("max_tokens: 8", "max_tokens: 2000"));
    const command = `'${process.execPath}' '${main}' run demo hi | head -c 10; echo "exit \${PIPESTATUS[0]}" >&2`;
    const child = Bun.spawn(["bash", "-c", command], { cwd: dir.path, env: env(), stdout: "pipe", stderr: "pipe" });
    children.push(child);
    const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    expect(stdout).toHaveLength(10);
    expect(stderr).toBe("exit 0\n");
  });

  test("with a server at --port: answers come from it, ps shows the model loaded, list marks it, and a source is pulled into the server's models.yaml", async () => {
    await using server = await startTestServer(
      { demo: { source: "synthetic:demo", context: 2048, parallel: 1, defaults: { max_tokens: 8 } } },
      { cacheDir: cache.path, hfEndpoint: hub.url },
    );
    const port = new URL(server.url).port;
    const models = join(server.dir, "models.yaml");
    const answer = await llamaport(["run", "demo", "hi", "--port", port, "--verbose"], server.dir);
    expect(`${answer.code}\n${answer.stderr}`).toMatch(/^0\nprompt: \d+ tokens \(0 cached\); answer: 8 tokens/);
    // The server's own line for the request the CLI sent.
    expect(server.logs.some((line) => /^info POST \/v1\/chat\/completions 200 .* demo \d+\+8 tokens/.test(line))).toBe(true);
    const ps = await llamaport(["ps", "--port", port], server.dir);
    expect(ps.stdout).toMatch(/^NAME\s+SIZE\s+CONTEXT\s+UNTIL\ndemo\s+[\d.]+ (KiB|MiB)\s+2048\s+\d+ s from now\n$/);
    const list = await llamaport(["list", "--port", port, "--models", models], server.dir);
    expect(list.stdout).toMatch(/\ndemo\s+234\.1 KiB\s+Q8_0\s+202K\s+2048\s+yes\n/);
    expect(list.stderr).toContain(`LOADED: the server at ${server.url}`);
    const unknown = await llamaport(["run", "nope", "hi", "--port", port], server.dir);
    expect(unknown.stderr).toBe(`llamaport: model "nope" not found on the server at ${server.url}; it has: demo\n`);
    const pulled = await llamaport(["run", "hf:acme/tiny-GGUF", "hi", "--port", port, "--models", models], server.dir);
    expect(`${pulled.code}\n${pulled.stderr}`).toMatch(/^0\nresolving hf:acme\/tiny-GGUF\n/);
    expect((await server.engine.listModels()).map((m) => m.name)).toContain("tiny-Q4_K_M");
    expect(readFileSync(models, "utf8")).toContain("  tiny-Q4_K_M:\n    source: hf:acme/tiny-GGUF/tiny-Q4_K_M.gguf\n");
  });

  test("ps without a server says so", async () => {
    using dir = tempDir();
    const { code, stderr } = await llamaport(["ps"], dir.path);
    expect(code).toBe(1);
    expect(stderr).toBe(`llamaport: no llamaport server at 127.0.0.1:${freePort} (start one with \`llamaport serve\`)\n`);
  });

  test("the chat in a terminal: history goes with each turn, Ctrl-C stops an answer, Ctrl-C at the prompt says how to leave, Ctrl-D leaves", async () => {
    using dir = tempDir();
    writeFileSync(join(dir.path, "models.yaml"), modelsYaml.replace("    defaults: { max_tokens: 8 }\n", ""));
    const terminal = inTerminal(["run", "demo", "--verbose"], dir.path);
    let at = await terminal.waitFor(/>>> /);
    expect(terminal.output).toContain("Chatting with demo (in this process: no server at --host/--port).");
    // An answer runs until the context is full (seconds): Ctrl-C once its text shows.
    terminal.type("hello there\r");
    at = await terminal.waitFor(/hello there[\r\n]+\s*\S+ \S+/, at);
    terminal.type("\x03");
    at = await terminal.waitFor(/\(stopped\)/, at);
    const first = /prompt: (\d+) tokens \((\d+) cached\); answer: (\d+) tokens/.exec(terminal.output.slice(at));
    at = await terminal.waitFor(/>>> /, at);
    terminal.type("and again\r");
    at = await terminal.waitFor(/and again[\r\n]+\s*\S+ \S+/, at);
    terminal.type("\x03");
    at = await terminal.waitFor(/\(stopped\)/, at);
    at = await terminal.waitFor(/answer: \d+ tokens/, at - 20);
    const second = /prompt: (\d+) tokens \((\d+) cached\); answer: (\d+) tokens/.exec(terminal.output.slice(at - 200));
    // Stopped early (the context holds 2048), and the second turn carried the first: more prompt, most of it cached.
    expect(Number(first?.[3])).toBeLessThan(1500);
    expect(Number(second?.[1])).toBeGreaterThan(Number(first?.[1]) + Number(first?.[3]));
    expect(Number(second?.[2])).toBeGreaterThan(0);
    at = await terminal.waitFor(/>>> /, at);
    terminal.type("\x03");
    at = await terminal.waitFor(/Use Ctrl-D or \/bye to leave\./, at);
    terminal.type("\x04");
    expect(await terminal.child.exited).toBe(0);
    expect(existsSync(join(dir.path, "models.yaml"))).toBe(true);
  });
});
