/**
 * The chat page end to end in a real browser (Debian's Chromium driven by playwright-core), served by the real server:
 * the API key prompt, a streamed reply from the real engine, the stop button, and a reply that tries to inject HTML and
 * script, which must show as text. Leaves a screenshot in test-artifacts/webchat.png.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Page } from "playwright-core";
import { chromiumPath, hasChromium, launchChromium } from "../support/chromium.ts";
import { bodyOf, startTestServer, type TestServer } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

if (!hasChromium)
  console.warn(`SKIPPING the browser tests in webchatBrowser.test.ts: no Chromium at ${chromiumPath} (.ci/run installs Debian's chromium)`);

const artifacts = resolve(import.meta.dir, "../../test-artifacts");

/** What the injection test's model "says": HTML, script and a javascript: link, cut so tags straddle stream chunks. */
const hostileReply = [
  "Here is **bold** and `<b>inline code</b>`.\n<img src=x on",
  "error=\"window.__pwned='img'\"> and <scr",
  "ipt>window.__pwned='script'</script>\n\n[a link](javascript:window.__pwned='link') and [docs](https://example.com/docs)\n\n```html\n",
  "<script>window.__pwned='fence'</script>\n<iframe src=\"https://example.com\"></iframe>\n```\n",
];

/**
 * The built-in OpenAI plugin with one change: the message "inject" is answered with `hostileReply` in OpenAI's stream
 * format (the tiny test models cannot write HTML). Everything else, and the page, is the real thing.
 */
function injectingOpenAiPlugin(): string {
  const real = resolve(import.meta.dir, "../../plugins/openai.ts");
  return `import { definePlugin, sse } from "llamaport";
import real from ${JSON.stringify(real)};
const pieces = ${JSON.stringify(hostileReply)};
function reply(model) {
  return sse((async function* () {
    const base = { id: "chatcmpl-inject", object: "chat.completion.chunk", created: 0, model };
    yield { ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] };
    for (const content of pieces) yield { ...base, choices: [{ index: 0, delta: { content }, finish_reason: null }] };
    yield { ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] };
    yield "[DONE]";
  })());
}
export default definePlugin({
  ...real,
  routes: real.routes.map((r) =>
    r.method === "POST" && r.path === "/v1/chat/completions"
      ? { ...r, handler: (c) => (c.body.messages.at(-1)?.content === "inject" ? reply(c.body.model) : r.handler(c)) }
      : r,
  ),
});
`;
}

describe.skipIf(!hasChromium)("the chat page in Chromium", () => {
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  const requested: string[] = [];
  const pageErrors: string[] = [];

  beforeAll(async () => {
    // One sequence and no max_tokens: the demo model's random words run to the end of its context, time to press stop.
    server = await startTestServer({ demo: { source: "synthetic:demo", context: 4096, parallel: 1 } }, { apiKeys: ["sk-page"] });
    browser = await launchChromium();
    page = browser.page;
    page.on("request", (request) => requested.push(request.url()));
    page.on("pageerror", (error) => pageErrors.push(error.message));
  });
  afterAll(async () => {
    await browser?.close();
    await server?.[Symbol.asyncDispose]();
  });

  const reply = () => page.locator(".message.assistant").last();
  const replyText = () => reply().locator(".content").textContent();

  test("asks for the API key, streams a reply from the engine, and the stop button stops it", async () => {
    await page.goto(server.url);
    await page.locator("#notice", { hasText: "needs an API key" }).waitFor();
    expect(await page.locator("#settings").isVisible()).toBe(true);
    await page.fill("#api-key", "sk-page");
    await page.press("#api-key", "Tab");
    await page.locator("#model option[value=demo]").waitFor({ state: "attached" });
    expect(await page.locator("#settings").isVisible()).toBe(false);
    expect(await page.locator("#notice").isVisible()).toBe(false);
    expect(await page.evaluate(() => localStorage.getItem("llamaport.apiKey"))).toBe("sk-page");

    await page.fill("#prompt", "Tell me a story");
    await page.press("#prompt", "Enter");
    // Streamed: text shows while the reply is still running, and keeps growing.
    const length = async () => (await replyText())?.length ?? 0;
    const early = await waitFor(length, (n) => n > 40, 30_000);
    expect(await page.locator("#stop").isVisible()).toBe(true);
    await waitFor(length, (n) => n > early + 40, 30_000);
    await page.click("#stop");
    await reply().locator(".stopped").waitFor();
    expect(await page.locator("#stop").isVisible()).toBe(false);
    const stats = reply().locator(".stats");
    expect(Number(await stats.getAttribute("data-ttft-ms"))).toBeGreaterThan(0);
    expect(await stats.textContent()).toMatch(/^first token \d+ ms · \d+ tokens · \d+ tok\/s$/);

    // The server stopped decoding: the sequence is free long before 4,000 tokens, and the request's line says why.
    await waitFor(
      async () => server.engine.loadedModels()[0]?.activeSequences,
      (active) => active === 0,
    );
    const line = await waitFor(
      async () => server.logs.find((l) => l.startsWith("info POST /v1/chat/completions 200") && l.includes("client disconnected")),
      (found) => found !== undefined,
    );
    expect(line).toContain("demo");
    const stopped = (await replyText())!;
    await Bun.sleep(300); // nothing may arrive after stop (a stream still running would keep adding text)
    expect(await replyText()).toBe(stopped);
  });

  test("a reply carrying HTML, script and a javascript: link is shown as text; Markdown still renders", async () => {
    await Bun.write(join(server.dir, "plugins", "openai.ts"), injectingOpenAiPlugin());
    await waitFor(
      async () => (await bodyOf(fetch(`${server.url}/plugins`, { headers: { authorization: "Bearer sk-page" } }))).plugins,
      (plugins: { id: string; source: string }[]) => plugins.some((p) => p.id === "openai" && p.source.endsWith("openai.ts")),
    );
    await page.fill("#prompt", "inject");
    await page.press("#prompt", "Enter");
    await reply().locator(".stats").waitFor();
    const text = (await replyText())!;
    expect(text).toContain(`<img src=x onerror="window.__pwned='img'">`);
    expect(text).toContain("<script>window.__pwned='script'</script>");
    expect(await reply().locator("pre code").textContent()).toContain("<script>window.__pwned='fence'</script>");
    expect(await reply().locator("img, script, iframe, [onerror]").count()).toBe(0);
    expect(await reply().locator("strong").textContent()).toBe("bold");
    expect(await reply().locator("code").first().textContent()).toBe("<b>inline code</b>");
    // The javascript: link is its text only; the https one a link that opens apart from the page.
    expect(await reply().locator("a").count()).toBe(1);
    expect(await reply().locator("a").getAttribute("href")).toBe("https://example.com/docs");
    expect(await reply().locator("a").getAttribute("rel")).toBe("noopener noreferrer");
    expect(text).toContain("a link and docs");
    expect(await page.evaluate("window.__pwned")).toBeUndefined();
    expect(requested.filter((url) => !url.startsWith(server.url))).toEqual([]);
    expect(requested.some((url) => url.endsWith("/x"))).toBe(false);
    expect(pageErrors).toEqual([]);

    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, "webchat.png") });
  });
});
