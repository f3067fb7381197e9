/**
 * `bun bench/webchatLatency.ts [rounds]`: time to first token as the chat page shows it (Chromium, the real page)
 * against a streamed API request from a plain client, same model and prompt, and the server's own figure for each
 * (its request log line). Rounds alternate page and API; medians and 90th percentiles are printed.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { startLlamaport } from "../src/server/startLlamaport.ts";
import { hasChromium, launchChromium } from "../tests/support/chromium.ts";
import { hasSharedModels, storiesModel, testCacheDir } from "../tests/support/testServer.ts";

const rounds = Number(process.argv[2] ?? 10);
if (!hasChromium) throw new Error("needs Debian's chromium (apt-get install chromium)");
const source = hasSharedModels ? storiesModel : "synthetic:demo";
const dir = mkdtempSync(join(tmpdir(), "llamaport-webchat-bench-"));
const modelsFile = join(dir, "models.yaml");
await Bun.write(
  modelsFile,
  stringify({ models: { bench: { source, context: 512, parallel: 1, threads: 1, keep_alive: -1, defaults: { max_tokens: 32 } } } }),
);
const serverTtft = new Map<string, number>();
const server = await startLlamaport({
  port: 0,
  models: modelsFile,
  cacheDir: testCacheDir,
  watch: false,
  log: (_level, _message, fields) => {
    if (fields?.request_id && typeof fields.ttft_ms === "number") serverTtft.set(String(fields.request_id), fields.ttft_ms);
  },
});
await server.ready;
await server.engine.load("bench");
const prompt = "Once upon a time";

/** The API: fetch, stream, stop at the first piece of text. */
async function apiRound(id: string): Promise<number> {
  const started = performance.now();
  const controller = new AbortController();
  const response = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": id },
    body: JSON.stringify({ model: "bench", stream: true, messages: [{ role: "user", content: prompt }] }),
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended without text");
    text += decoder.decode(value, { stream: true });
    if (/"content":"[^"]/.test(text)) break;
  }
  const ttft = performance.now() - started;
  await reader.cancel();
  return ttft;
}

const browser = await launchChromium();
const { page } = browser;
const pageIds: string[] = [];
page.on("request", (request) => {
  if (request.url().endsWith("/v1/chat/completions")) pageIds.push("");
});
page.on("response", (response) => {
  if (response.url().endsWith("/v1/chat/completions")) pageIds[pageIds.length - 1] = response.headers()["x-request-id"] ?? "";
});
await page.goto(server.url);
await page.locator("#model option[value=bench]").waitFor({ state: "attached" });

/** The page: a new chat, the same prompt, the time to first token it shows once the reply ends. */
async function pageRound(): Promise<number> {
  await page.click("#new-chat");
  await page.fill("#prompt", prompt);
  await page.press("#prompt", "Enter");
  const stats = page.locator(".message.assistant .stats");
  await stats.waitFor();
  return Number(await stats.getAttribute("data-ttft-ms"));
}

const shown: number[] = [];
const api: number[] = [];
const apiIds: string[] = [];
await pageRound(); // warm-up: the page's first request, the browser's connection
await apiRound("warm-up");
for (let i = 0; i < rounds; i++) {
  shown.push(await pageRound());
  apiIds.push(`api-${i}`);
  api.push(await apiRound(`api-${i}`));
}
await browser.close();
await Bun.sleep(100);
await server.stop();

const pick = (ids: string[]) => ids.map((id) => serverTtft.get(id)).filter((v): v is number => v !== undefined);
const summary = (values: number[]) => {
  const sorted = values.slice().sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `median ${at(0.5).toFixed(1)} ms, p90 ${at(0.9).toFixed(1)} ms (n=${values.length})`;
};
console.log(`model: ${source} (1 thread, context 512), prompt "${prompt}", ${rounds} rounds each`);
console.log(`chat page, shown:        ${summary(shown)}`);
console.log(`  server's own ttft:     ${summary(pick(pageIds.slice(1)))}`);
console.log(`API client (fetch):      ${summary(api)}`);
console.log(`  server's own ttft:     ${summary(pick(apiIds))}`);
