/** The command line: flags beat env beat defaults, usage errors exit 2, and `serve` really serves (a child process). */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandUsage, flags, parseArgs, UsageError, usage } from "../../src/cli/parseArgs.ts";
import { LogReader } from "../support/LogReader.ts";
import { tempDir, testCacheDir, writeModelsYaml } from "../support/testServer.ts";

const main = join(import.meta.dir, "../../src/main.ts");

describe("parseArgs", () => {
  test("defaults", () => {
    // No token file either (a developer's own ~/.cache/huggingface/token must not leak in).
    expect(parseArgs(["serve"], { HF_TOKEN_PATH: "/nonexistent/token" })).toEqual({
      kind: "serve",
      settings: {
        host: "127.0.0.1",
        port: 9112,
        models: undefined,
        plugins: undefined,
        threads: undefined,
        cacheDir: expect.stringMatching(/\/\.cache\/llamaport$/),
        hfEndpoint: "https://huggingface.co",
        apiKeys: [],
        apiKeyFile: undefined,
        allowedHosts: [],
        allowedOrigins: [],
        maxBodyBytes: undefined,
        maxRequests: undefined,
        idleTimeoutSeconds: undefined,
        shutdownTimeoutMs: 10_000,
        logFormat: "text",
        publicMetrics: false,
      },
    });
    expect(parseArgs([], {}).kind).toBe("serve");
  });

  test("log format and public metrics: a switch without a value, its variable 1 or 0", () => {
    expect(parseArgs(["serve", "--log-format", "json", "--public-metrics"], {})).toMatchObject({
      settings: { logFormat: "json", publicMetrics: true },
    });
    expect(parseArgs(["serve", "--port", "1", "--public-metrics", "--host", "::1"], {})).toMatchObject({
      settings: { port: 1, publicMetrics: true, host: "::1" },
    });
    expect(parseArgs(["serve"], { LLAMAPORT_LOG_FORMAT: "json", LLAMAPORT_PUBLIC_METRICS: "1" })).toMatchObject({
      settings: { logFormat: "json", publicMetrics: true },
    });
    expect(parseArgs(["serve", "--public-metrics=0"], { LLAMAPORT_PUBLIC_METRICS: "1" })).toMatchObject({
      settings: { publicMetrics: false },
    });
    expect(() => parseArgs(["serve", "--log-format", "xml"], {})).toThrow('--log-format must be one of text, json, got "xml"');
    expect(() => parseArgs(["serve"], { LLAMAPORT_PUBLIC_METRICS: "maybe" })).toThrow("--public-metrics is on or off");
  });

  test("where clients may pull from: unset (the server decides by its address), anywhere or hub; flags beat env", () => {
    expect(parseArgs(["serve"], {})).toMatchObject({ settings: { pullFrom: undefined } });
    expect(parseArgs(["serve"], { LLAMAPORT_PULL_FROM: "anywhere" })).toMatchObject({ settings: { pullFrom: "anywhere" } });
    expect(parseArgs(["serve", "--pull-from", "hub"], { LLAMAPORT_PULL_FROM: "anywhere" })).toMatchObject({
      settings: { pullFrom: "hub" },
    });
    expect(() => parseArgs(["serve", "--pull-from", "lan"], {})).toThrow('--pull-from must be one of anywhere, hub, got "lan"');
    expect(() => parseArgs(["run", "demo", "--pull-from", "hub"], {})).toThrow();
  });

  test("env beats defaults, flags beat env", () => {
    const env = {
      LLAMAPORT_HOST: "0.0.0.0",
      LLAMAPORT_PORT: "8000",
      LLAMAPORT_MODELS: "/env/models.yaml",
      LLAMAPORT_PLUGINS: "/env/plugins",
    };
    expect(parseArgs(["serve"], env)).toMatchObject({
      settings: { host: "0.0.0.0", port: 8000, models: "/env/models.yaml", plugins: "/env/plugins" },
    });
    expect(parseArgs(["serve", "--port", "9000", "--models=/flag.yaml", "--host", "::1"], env)).toMatchObject({
      settings: { host: "::1", port: 9000, models: "/flag.yaml", plugins: "/env/plugins" },
    });
  });

  test("access and limit settings: flags beat env, lists add up, bad values are usage errors", () => {
    const env = {
      LLAMAPORT_API_KEY: "env-a,env-b",
      LLAMAPORT_ALLOWED_HOSTS: "box.lan",
      LLAMAPORT_MAX_BODY_SIZE: "1MiB",
      LLAMAPORT_SHUTDOWN_TIMEOUT: "3s",
      LLAMAPORT_IDLE_TIMEOUT: "20",
      LLAMAPORT_MAX_REQUESTS: "100",
    };
    expect(parseArgs(["serve"], env)).toMatchObject({
      settings: {
        apiKeys: ["env-a", "env-b"],
        allowedHosts: ["box.lan"],
        maxBodyBytes: 1024 ** 2,
        shutdownTimeoutMs: 3000,
        idleTimeoutSeconds: 20,
        maxRequests: 100,
      },
    });
    const flags = ["serve", "--api-key", "a", "--api-key=b,c", "--allowed-origins", "https://*.x.com", "--shutdown-timeout", "1m"];
    expect(parseArgs([...flags, "--api-key-file", "/keys"], env)).toMatchObject({
      settings: { apiKeys: ["a", "b", "c"], apiKeyFile: "/keys", allowedOrigins: ["https://*.x.com"], shutdownTimeoutMs: 60_000 },
    });
    expect(() => parseArgs(["serve", "--idle-timeout", "300s"], {})).toThrow("--idle-timeout must be from 1 to 255 seconds");
    expect(() => parseArgs(["serve", "--max-body-size", "lots"], {})).toThrow("--max-body-size: invalid size");
    expect(() => parseArgs(["serve", "--max-requests", "0"], {})).toThrow("--max-requests must be an integer from 1");
  });

  test("--help names every flag and every environment variable", () => {
    for (const [flag, variable] of Object.entries(flags)) {
      expect(usage).toContain(`--${flag} `);
      expect(usage).toContain(`[${variable}]`);
    }
    for (const variable of ["LLAMAPORT_CACHE", "LLAMAPORT_HF_ENDPOINT", "HF_TOKEN", "HF_TOKEN_PATH", "HF_HOME", "XDG_CACHE_HOME"])
      expect(usage).toContain(variable);
  });

  test("the other commands: their arguments, their flags only, and the environment of those flags", () => {
    const env = { LLAMAPORT_PORT: "9000", LLAMAPORT_MODELS: "/env.yaml", LLAMAPORT_API_KEY: "k1,k2", LLAMAPORT_MAX_BODY_SIZE: "1MiB" };
    expect(parseArgs(["pull", "hf:acme/tiny-GGUF:Q8_0", "--name", "tiny"], env)).toMatchObject({
      kind: "pull",
      source: "hf:acme/tiny-GGUF:Q8_0",
      name: "tiny",
      settings: { models: "/env.yaml", port: 9112 }, // pull takes no --port, so not its variable either
    });
    expect(parseArgs(["run", "demo", "tell", "a", "joke", "--verbose"], env)).toMatchObject({
      kind: "run",
      model: "demo",
      prompt: "tell a joke",
      verbose: true,
      settings: { port: 9000, apiKeys: ["k1", "k2"], maxBodyBytes: undefined },
    });
    expect(parseArgs(["run", "demo", "--", "--not-a-flag"], {})).toMatchObject({ prompt: "--not-a-flag", verbose: false });
    expect(parseArgs(["list", "--port", "1"], {})).toMatchObject({ kind: "list", settings: { port: 1 } });
    expect(parseArgs(["ps"], env)).toMatchObject({ kind: "ps", settings: { port: 9000, models: undefined } });
    expect(parseArgs(["show", "demo"], {})).toMatchObject({ kind: "show", model: "demo" });
    expect(parseArgs(["init"], {})).toEqual({ kind: "init", dir: undefined, force: false });
    expect(parseArgs(["init", "x", "--force"], {})).toEqual({ kind: "init", dir: "x", force: true });
    expect(parseArgs(["pull", "--help"], {})).toEqual({ kind: "help", command: "pull" });
    expect(parseArgs(["help", "run"], {})).toEqual({ kind: "help", command: "run" });
    expect(() => parseArgs(["pull"], {})).toThrow("pull needs a SOURCE");
    expect(() => parseArgs(["show"], {})).toThrow("show needs a MODEL");
    expect(() => parseArgs(["ps", "extra"], {})).toThrow('unexpected argument "extra"');
    expect(() => parseArgs(["pull", "x", "--port", "1"], {})).toThrow('unknown option "--port" for pull');
    expect(() => parseArgs(["help", "frobnicate"], {})).toThrow('unknown command "frobnicate"');
    for (const command of Object.keys(commandUsage))
      expect(commandUsage[command as keyof typeof commandUsage]).toStartWith(`Usage: llamaport ${command}`);
  });

  test("the Hugging Face token: HF_TOKEN, else the file huggingface-cli writes", () => {
    using dir = tempDir();
    writeFileSync(join(dir.path, "token"), "hf_from_file\n");
    expect(parseArgs(["pull", "x"], { HF_TOKEN: "hf_env" })).toMatchObject({
      settings: { hfToken: "hf_env" },
    });
    expect(parseArgs(["serve"], { HF_HOME: dir.path })).toMatchObject({ settings: { hfToken: "hf_from_file" } });
    expect(parseArgs(["serve"], { HF_TOKEN_PATH: join(dir.path, "token") })).toMatchObject({ settings: { hfToken: "hf_from_file" } });
    expect(parseArgs(["serve"], { HF_TOKEN_PATH: join(dir.path, "none") })).toMatchObject({ settings: { hfToken: undefined } });
  });

  test("help, version, and usage errors", () => {
    expect(parseArgs(["--help"], {}).kind).toBe("help");
    expect(parseArgs(["--version"], {}).kind).toBe("version");
    expect(() => parseArgs(["serve", "--bogus"], {})).toThrow(UsageError);
    expect(() => parseArgs(["serve", "--port"], {})).toThrow("--port needs a value");
    expect(() => parseArgs(["serve", "--port", "http"], {})).toThrow("--port must be an integer");
    expect(() => parseArgs(["frobnicate"], {})).toThrow('unknown command "frobnicate"');
  });
});

describe("the llamaport process", () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    Bun.spawn([process.execPath, main, ...args], {
      env: { ...process.env, LLAMAPORT_CACHE: testCacheDir, ...env },
      stdout: "pipe",
      stderr: "pipe",
    });

  test("--version and --help exit 0; an unknown flag prints usage and exits 2", async () => {
    const version = run(["--version"]);
    expect(await version.exited).toBe(0);
    expect(await new Response(version.stdout).text()).toMatch(/^llamaport \d+\.\d+\.\d+\n$/);
    const help = run(["--help"]);
    expect(await help.exited).toBe(0);
    expect(await new Response(help.stdout).text()).toContain("llamaport serve");
    const bad = run(["serve", "--nope"]);
    expect(await bad.exited).toBe(2);
    expect(await new Response(bad.stderr).text()).toContain('unknown option "--nope"');
  });

  test("a bad models.yaml stops start-up with file, line, key and what was expected", async () => {
    using dir = tempDir();
    const file = join(dir.path, "models.yaml");
    await Bun.write(file, "models:\n  demo:\n    source: synthetic:demo\n    parallel: four\n");
    const child = run(["serve", "--port", "0", "--models", file]);
    expect(await child.exited).toBe(1);
    const stderr = await new Response(child.stderr).text();
    expect(stderr).toContain(`${file}:4:15: models.demo.parallel`);
    expect(stderr).toContain("integer");
  });

  test("serve listens (env settings) and answers both seed endpoints; SIGTERM stops it", async () => {
    using dir = tempDir();
    const file = await writeModelsYaml(dir.path, { demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
    const started = performance.now();
    const child = run(["serve"], { LLAMAPORT_PORT: "0", LLAMAPORT_MODELS: file });
    const log = new LogReader(child.stderr);
    const url = (await log.waitFor(/listening on (http:\/\/\S+)/, 30_000))[1]!;
    console.log(`process start -> listening: ${(performance.now() - started).toFixed(0)} ms`);
    try {
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "demo", stream: true, max_tokens: 4, messages: [{ role: "user", content: "tell a joke" }] }),
      });
      expect(await chat.text()).toEndWith("event: done\ndata: [DONE]\n\n");
      const generate = await fetch(`${url}/api/generate`, {
        method: "POST",
        body: JSON.stringify({ model: "demo", prompt: "tell me a joke", options: { num_predict: 4 } }),
      });
      const lines = (await generate.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l));
      expect(lines.at(-1).done).toBe(true);
    } finally {
      child.kill("SIGTERM");
    }
    const code = await child.exited;
    await log.closed;
    expect(`${code}\n${log.text}`).toStartWith("0\n");
    expect(log.text).toContain("SIGTERM: shutting down");
  });

  test("--log-format json: every line is a JSON object; a request's line has its id and numbers as fields", async () => {
    using dir = tempDir();
    const file = await writeModelsYaml(dir.path, { demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
    const child = run(["serve", "--port", "0", "--models", file, "--log-format", "json"]);
    const log = new LogReader(child.stderr);
    const url = (await log.waitFor(/"msg":"listening on (http:\/\/[^"]+)"/, 30_000))[1]!;
    try {
      const chat = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "x-request-id": "json-1" },
        body: JSON.stringify({ model: "demo", max_tokens: 3, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(chat.headers.get("x-request-id")).toBe("json-1");
      await chat.json();
      await log.waitFor(/"request_id":"json-1"/, 10_000);
    } finally {
      child.kill("SIGTERM");
    }
    await child.exited;
    await log.closed;
    const lines = log.text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(lines.every((line) => typeof line.time === "string" && typeof line.level === "string" && typeof line.msg === "string")).toBe(
      true,
    );
    expect(lines.find((line) => line.request_id === "json-1")).toEqual({
      time: expect.any(String),
      level: "info",
      msg: expect.stringMatching(/^POST \/v1\/chat\/completions 200 .* \[json-1\]$/),
      request_id: "json-1",
      method: "POST",
      path: "/v1/chat/completions",
      route: "/v1/chat/completions",
      status: 200,
      duration_ms: expect.any(Number),
      model: "demo",
      prompt_tokens: expect.any(Number),
      completion_tokens: 3,
      ttft_ms: expect.any(Number),
      tokens_per_second: expect.any(Number),
    });
  });
});
