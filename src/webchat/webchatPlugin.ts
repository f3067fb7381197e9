/**
 * The web chat page at `/` for browsers: a built-in plugin whose one route serves requests that accept HTML, so
 * Ollama's `GET /` keeps answering its clients. The page is made when the server is built (a macro) and served with
 * a Content-Security-Policy that allows only its own inline script and style and requests to this server.
 */
import { createHash } from "node:crypto";
import { definePlugin } from "../pluginApi/definePlugin.ts";
import { bundlePage } from "./bundlePage.ts" with { type: "macro" };

const parts = bundlePage();

/** The page with its script and style in place. */
export const chatPage: string = parts.html.replace("/*STYLE*/", () => parts.style).replace("/*SCRIPT*/", () => parts.script);

/** The inline script and style exactly as they stand between their tags, for their CSP hashes. */
function inlineContent(tag: "script" | "style"): string {
  const open = chatPage.indexOf(">", chatPage.indexOf(`<${tag}`)) + 1;
  return chatPage.slice(open, chatPage.indexOf(`</${tag}>`, open));
}

const hash = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

/**
 * Defence in depth behind the page's text-only rendering: were model output ever to become markup, no inline handler,
 * injected script, remote image, form or frame could run or load.
 */
export const chatPageSecurityPolicy = [
  "default-src 'none'",
  `script-src ${hash(inlineContent("script"))}`,
  `style-src ${hash(inlineContent("style"))}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const headers = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": chatPageSecurityPolicy,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

export default definePlugin({
  name: "webchat",
  version: "1.0.0",
  routes: [
    {
      method: "GET",
      path: "/",
      when: { header: "accept", includes: "text/html" },
      handler: () => new Response(chatPage, { headers }),
    },
  ],
});
