/** Access: API keys through the official clients, the Host check against DNS rebinding, browser origins (CORS) and JSON-only bodies. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Anthropic from "@anthropic-ai/sdk";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { Ollama } from "ollama";
import OpenAI from "openai";
import { AccessPolicy } from "../../src/server/accessPolicy.ts";
import { bodyOf, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const key = "sk-test-0123456789";
const fileKey = "from-the-key-file";
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 2 } }, { apiKeys: [key] });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const chat = { model: "demo", max_tokens: 2, messages: [{ role: "user", content: "hi" }] };
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });

describe("API keys", () => {
  test("the official clients send the key the way each protocol does, and get answers", async () => {
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: key, maxRetries: 0 });
    const completion = await openai.chat.completions.create({ model: "demo", max_tokens: 2, messages: [{ role: "user", content: "hi" }] });
    expect(completion.choices[0]!.message.role).toBe("assistant");
    // The Anthropic SDK sends x-api-key.
    const anthropic = new Anthropic({ baseURL: server.url, apiKey: key, maxRetries: 0 });
    const message = await anthropic.messages.create({ model: "demo", max_tokens: 2, messages: [{ role: "user", content: "hi" }] });
    expect(message.type).toBe("message");
    // Ollama's clients send `Authorization: Bearer`, set through their headers option.
    const ollama = new Ollama({ host: server.url, headers: { Authorization: `Bearer ${key}` } });
    expect((await ollama.list()).models.map((m) => m.name)).toContain("demo:latest");
  });

  test("a missing or wrong key is a 401 in each protocol's error format; the key is never echoed or logged", async () => {
    const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "sk-wrong", maxRetries: 0 });
    const error = await openai.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe("invalid_api_key");

    const anthropic = new Anthropic({ baseURL: server.url, apiKey: "wrong", maxRetries: 0 });
    const anthropicError = await anthropic.messages
      .create({ model: "demo", max_tokens: 2, messages: [{ role: "user", content: "x" }] })
      .catch((e: unknown) => e);
    expect(anthropicError).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((anthropicError as { error: unknown }).error).toEqual({
      type: "error",
      error: { type: "authentication_error", message: "the API key is not valid" },
    });

    const ollama = await post("/api/chat", chat);
    expect(ollama.status).toBe(401);
    expect(await bodyOf(ollama)).toEqual({
      error: "an API key is required: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`",
    });
    // A key that shares a prefix, or is longer, is as wrong as any other.
    for (const wrong of [key.slice(0, -1), `${key}x`, key.toUpperCase()])
      expect((await post("/api/chat", chat, { authorization: `Bearer ${wrong}` })).status).toBe(401);
    expect(server.logs.join("\n")).not.toContain("sk-wrong");
    expect(server.logs.join("\n")).not.toContain(key);
  });

  test("/health stays open; every other route, the host's own and plugin routes, needs the key", async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    for (const path of ["/", "/plugins", "/v1/models", "/api/tags", "/api/version", "/nothing-here"])
      expect(`${path} ${(await fetch(`${server.url}${path}`)).status}`).toBe(`${path} 401`);
    writeFileSync(
      join(server.dir, "plugins", "hello.ts"),
      `import { definePlugin } from "llamaport";
export default definePlugin({ name: "hello", error: (p) => ({ nope: p.message }), routes: [{ method: "GET", path: "/hello", handler: () => ({ hi: 1 }) }] });`,
    );
    const served = await waitFor(
      () => fetch(`${server.url}/hello`, { headers: { "x-api-key": key } }),
      (r) => r.status === 200,
    );
    expect(await bodyOf(served)).toEqual({ hi: 1 });
    const refused = await fetch(`${server.url}/hello`);
    expect(refused.status).toBe(401);
    // Rendered by the plugin that owns the route.
    expect(Object.keys(await bodyOf(refused))).toEqual(["nope"]);
  });

  test("api_keys in models.yaml are added, and edits to them apply at once", async () => {
    const models = await Bun.file(join(server.dir, "models.yaml")).text();
    await Bun.write(join(server.dir, "models.yaml"), `api_keys: [yaml-key-1]\n${models}`);
    await waitFor(
      () => fetch(`${server.url}/api/tags`, { headers: { authorization: "Bearer yaml-key-1" } }),
      (r) => r.status === 200,
    );
    // The command-line key still works.
    expect((await fetch(`${server.url}/api/tags`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    await Bun.write(join(server.dir, "models.yaml"), models);
    await waitFor(
      () => fetch(`${server.url}/api/tags`, { headers: { authorization: "Bearer yaml-key-1" } }),
      (r) => r.status === 401,
    );
  });

  test("a key file adds keys; a server without keys needs none", async () => {
    await using open = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } });
    expect((await fetch(`${open.url}/v1/models`)).status).toBe(200);
    const file = join(open.dir, "keys.txt");
    writeFileSync(file, `# keys for the team\n\n${fileKey}\n`);
    await using keyed = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } }, { apiKeyFile: file });
    expect((await fetch(`${keyed.url}/v1/models`)).status).toBe(401);
    expect((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: `Bearer ${fileKey}` } })).status).toBe(200);
    expect((await fetch(`${keyed.url}/v1/models`, { headers: { authorization: "Bearer # keys for the team" } })).status).toBe(401);
  });

  test("listening on a non-loopback address without a key prints a loud warning", async () => {
    await using exposed = await startTestServer({ demo: { source: "synthetic:demo", context: 256, parallel: 1 } }, { host: "0.0.0.0" });
    expect(exposed.logs.some((line) => line.startsWith("warn WARNING: listening on 0.0.0.0 without an API key"))).toBe(true);
    expect(server.logs.some((line) => line.includes("without an API key"))).toBe(false);
  });
});

describe("browsers", () => {
  const withKey = { authorization: `Bearer ${key}` };

  test("a page on another site gets a 403 and no CORS headers, and the refusal is logged once per origin", async () => {
    for (let i = 0; i < 3; i++) {
      const response = await post("/api/generate", { model: "demo", prompt: "hi" }, { ...withKey, origin: "https://evil.example" });
      expect(response.status).toBe(403);
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
      expect((await bodyOf(response)).error).toContain("https://evil.example");
    }
    expect(server.logs.filter((line) => line.includes("refused a request from origin https://evil.example"))).toHaveLength(1);
  });

  test("pages on localhost get CORS headers; their preflight is answered without a key", async () => {
    const preflight = await fetch(`${server.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: {
        origin: "http://localhost:5173",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("authorization, content-type");
    const response = await post("/v1/chat/completions", chat, { ...withKey, origin: "http://localhost:5173" });
    expect(response.status).toBe(200);
    expect(response.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    // A 401 is readable by the page too, so it can tell the user to set a key.
    const unauthorized = await post("/v1/chat/completions", chat, { origin: "http://127.0.0.1:8080" });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get("access-control-allow-origin")).toBe("http://127.0.0.1:8080");
  });

  test("a configured origin pattern is allowed", async () => {
    await using configured = await startTestServer(
      { demo: { source: "synthetic:demo", context: 256, parallel: 1 } },
      { allowedOrigins: ["https://*.example.com"] },
    );
    const allowed = await fetch(`${configured.url}/api/tags`, { headers: { origin: "https://app.example.com" } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example.com");
    expect((await fetch(`${configured.url}/api/tags`, { headers: { origin: "https://example.com.evil.net" } })).status).toBe(403);
  });

  test("JSON routes take only JSON from a browser: a form or text/plain body (a 'simple' cross-site request) is a 415", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const response = await post("/api/chat", chat, { ...withKey, origin: "http://localhost:3000", "content-type": type });
      expect(response.status).toBe(415);
      expect((await bodyOf(response)).error).toContain("Content-Type: application/json");
    }
    const openai = await post("/v1/chat/completions", chat, { ...withKey, "content-type": "application/xml" });
    expect(openai.status).toBe(415);
    expect((await bodyOf(openai)).error.type).toBe("invalid_request_error");
  });

  test("clients that are no browser may send what their HTTP library sends by default (curl -d, fetch with a string)", async () => {
    for (const type of ["application/x-www-form-urlencoded", "text/plain;charset=UTF-8", "application/json; charset=utf-8", ""]) {
      const headers: Record<string, string> = { ...withKey };
      if (type) headers["content-type"] = type;
      const response = await fetch(`${server.url}/api/chat`, { method: "POST", headers, body: JSON.stringify({ ...chat, stream: false }) });
      expect(`${type} ${response.status}`).toBe(`${type} 200`);
    }
  });
});

describe("Host header (DNS rebinding)", () => {
  test("a name that is not local is refused with a 403 in the route's format; local names and addresses pass", async () => {
    const refused = await fetch(`${server.url}/v1/models`, { headers: { host: "attacker.example:9112", authorization: `Bearer ${key}` } });
    expect(refused.status).toBe(403);
    expect((await bodyOf(refused)).error.message).toContain('Host "attacker.example:9112" is not allowed');
    for (const host of ["localhost:9112", "127.0.0.1", "[::1]:80", "app.localhost", "10.1.2.3:9112"])
      expect(`${host} ${(await fetch(`${server.url}/health`, { headers: { host } })).status}`).toBe(`${host} 200`);
  });

  test("a configured name is served, short ones too (Elysia lost the path when Host was under 4 characters)", async () => {
    await using named = await startTestServer(
      { demo: { source: "synthetic:demo", context: 256, parallel: 1 } },
      { allowedHosts: ["llm", "ai.lan"] },
    );
    for (const host of ["llm", "llm:9112", "ai.lan"]) {
      // fetch sets Host from the URL, so send the request by hand.
      const reply = await rawGet(named.port, "/v1/models", host);
      expect(`${host} ${reply.split("\r\n")[0]}`).toBe(`${host} HTTP/1.1 200 OK`);
    }
    expect((await rawGet(named.port, "/health", "elsewhere.example")).split("\r\n")[0]).toBe("HTTP/1.1 403 Forbidden");
  });
});

/** One GET with a Host header of our choosing, over a raw socket; the whole response as text. */
function rawGet(port: number, path: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    socket.on("data", (chunk) => {
      text += chunk.toString();
    });
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
}

describe("AccessPolicy", () => {
  const policy = (settings: Partial<ConstructorParameters<typeof AccessPolicy>[0]> = {}) =>
    new AccessPolicy({ boundHost: "127.0.0.1", apiKeys: () => [], ...settings });

  test("hosts: local names, addresses and the configured list; any host when bound to a public address (as Ollama)", () => {
    const local = policy({ allowedHosts: ["models.corp"] });
    for (const host of [
      "",
      "localhost",
      "LOCALHOST:1",
      "x.localhost",
      "box.local",
      "svc.internal",
      "192.168.1.9:80",
      "[::1]",
      "models.corp:9112",
    ])
      expect(`${host}: ${local.hostAllowed(host)}`).toBe(`${host}: true`);
    for (const host of ["evil.com", "localhost.evil.com", "models.corp.evil.com", "127.0.0.1.nip.io"])
      expect(`${host}: ${local.hostAllowed(host)}`).toBe(`${host}: false`);
    expect(policy({ boundHost: "0.0.0.0" }).hostAllowed("evil.com")).toBe(true);
    expect(policy({ boundHost: "0.0.0.0", allowedHosts: ["a.lan"] }).hostAllowed("evil.com")).toBe(false);
    expect(policy({ allowedHosts: ["*"] }).hostAllowed("evil.com")).toBe(true);
  });

  test("origins: localhost pages, editor and app views, the server's own pages, and configured patterns", () => {
    const local = policy({ allowedOrigins: ["https://*.corp.example"] });
    for (const origin of [
      "http://localhost",
      "https://localhost:8443",
      "http://127.0.0.1:5173",
      "http://[::1]:3000",
      "vscode-webview://abc",
      "https://chat.corp.example",
    ])
      expect(`${origin}: ${local.originAllowed(origin, "127.0.0.1:9112")}`).toBe(`${origin}: true`);
    for (const origin of ["null", "http://localhost.evil.com", "https://evil.com", "https://corp.example", "file://"])
      expect(`${origin}: ${local.originAllowed(origin, "127.0.0.1:9112")}`).toBe(`${origin}: false`);
    expect(local.originAllowed("http://192.168.1.5:9112", "192.168.1.5:9112")).toBe(true);
    expect(policy({ allowedOrigins: ["*"] }).originAllowed("https://anything.example", "x")).toBe(true);
  });
});
