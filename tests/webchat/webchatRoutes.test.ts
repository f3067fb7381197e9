/** `/` serves the chat page to browsers and Ollama's answer to everyone else; the page needs no key, the API does. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Ollama } from "ollama";
import { chatPageSecurityPolicy } from "../../src/webchat/webchatPlugin.ts";
import { bodyOf, startTestServer, type TestServer } from "../support/testServer.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ demo: { source: "synthetic:demo", context: 256 } }, { apiKeys: ["sk-web"] });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const browser = { accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" };
const key = { authorization: "Bearer sk-web" };

test("a browser gets the page, without a key, with a strict Content-Security-Policy and no outside resources", async () => {
  const response = await fetch(`${server.url}/`, { headers: browser });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
  expect(response.headers.get("content-security-policy")).toBe(chatPageSecurityPolicy);
  expect(chatPageSecurityPolicy).toStartWith("default-src 'none'; script-src 'sha256-");
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  const html = await response.text();
  expect(html).toContain("<title>llamaport chat</title>");
  // Works offline: no script, style, font or image from anywhere else.
  expect(html).not.toMatch(/(src|href)\s*=\s*["']?(https?:)?\/\//i);
  expect(html).not.toContain("/*SCRIPT*/");
  // The page's own script is the one the policy's hash allows.
  const script = html.slice(html.indexOf(">", html.indexOf("<script")) + 1, html.indexOf("</script>"));
  const digest = new Bun.CryptoHasher("sha256").update(script).digest("base64");
  expect(chatPageSecurityPolicy).toContain(`'sha256-${digest}'`);
  const head = await fetch(`${server.url}/`, { method: "HEAD", headers: browser });
  expect(head.status).toBe(200);
  expect(head.headers.get("content-type")).toBe("text/html; charset=utf-8");
});

test("other clients keep Ollama's answer on / (with the key, like every route but /health)", async () => {
  expect((await fetch(`${server.url}/`)).status).toBe(401);
  const plain = await fetch(`${server.url}/`, { headers: key });
  expect(plain.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  expect(await plain.text()).toBe("Ollama is running");
  const head = await fetch(`${server.url}/`, { method: "HEAD", headers: key });
  expect(head.status).toBe(200);
  expect(head.headers.get("content-type")).toBe("text/plain; charset=utf-8");
  // The official client, as users call it.
  const ollama = new Ollama({ host: server.url, headers: key });
  expect((await ollama.list()).models.map((m) => m.name)).toContain("demo:latest");
});

test("the page's API calls need the key; the page's own origin passes the Origin check", async () => {
  const origin = { origin: server.url, "content-type": "application/json" };
  expect((await fetch(`${server.url}/v1/models`, { headers: origin })).status).toBe(401);
  const models = await fetch(`${server.url}/v1/models`, { headers: { ...origin, ...key } });
  expect(models.status).toBe(200);
  expect(models.headers.get("access-control-allow-origin")).toBe(server.url);
});

test("without the Ollama plugin, non-browsers get the host's own answer on /", async () => {
  await using bare = await startTestServer(
    { demo: { source: "synthetic:demo", context: 256 } },
    { builtins: { webchat: (await import("../../src/webchat/webchatPlugin.ts")).default } },
  );
  expect(await (await fetch(`${bare.url}/`)).text()).toMatch(/^llamaport \d+\.\d+\.\d+ is running$/);
  expect(await (await fetch(`${bare.url}/`, { headers: browser })).text()).toContain("<title>llamaport chat</title>");
  const plugins = await bodyOf(fetch(`${bare.url}/plugins`));
  expect(plugins.plugins).toEqual([expect.objectContaining({ id: "webchat", routes: ["GET / (with accept: text/html)"] })]);
});
