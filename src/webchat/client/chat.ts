/**
 * The chat page's script: lists models, streams a chat through the server's own OpenAI route (`/v1/chat/completions`,
 * SSE), stops it on request, and shows time to first token and tokens per second. Replies are rendered with
 * renderMarkdown (text nodes only); the API key lives in this browser's local storage and goes only to this server.
 */
import { renderMarkdown } from "./renderMarkdown.ts";

interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** What the page measured for one reply (also on the stats element's data attributes, for tests and curious users). */
interface ReplyStats {
  firstTokenMs?: number;
  tokens: number;
  tokensPerSecond?: number;
}

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  model: byId<HTMLSelectElement>("model"),
  newChat: byId<HTMLButtonElement>("new-chat"),
  settingsToggle: byId<HTMLButtonElement>("settings-toggle"),
  settings: byId<HTMLElement>("settings"),
  system: byId<HTMLTextAreaElement>("system"),
  temperature: byId<HTMLInputElement>("temperature"),
  apiKey: byId<HTMLInputElement>("api-key"),
  notice: byId<HTMLParagraphElement>("notice"),
  messages: byId<HTMLElement>("messages"),
  composer: byId<HTMLFormElement>("composer"),
  prompt: byId<HTMLTextAreaElement>("prompt"),
  send: byId<HTMLButtonElement>("send"),
  stop: byId<HTMLButtonElement>("stop"),
};

const stored = {
  get: (key: string) => localStorage.getItem(`llamaport.${key}`) ?? "",
  set: (key: string, value: string) =>
    value === "" ? localStorage.removeItem(`llamaport.${key}`) : localStorage.setItem(`llamaport.${key}`, value),
};

let history: ChatMessage[] = [];
let running: AbortController | undefined;
/** The settings were opened to ask for a key. */
let askedForKey = false;

function headers(): Record<string, string> {
  const key = ui.apiKey.value.trim();
  return { "content-type": "application/json", ...(key && { authorization: `Bearer ${key}` }) };
}

function notice(text: string | undefined): void {
  ui.notice.hidden = text === undefined;
  ui.notice.textContent = text ?? "";
}

function showSettings(open: boolean): void {
  ui.settings.hidden = !open;
  ui.settingsToggle.setAttribute("aria-expanded", String(open));
}

/** The error message of an error response in OpenAI's format (or the status line when it is not JSON). */
async function errorOf(response: Response): Promise<string> {
  const text = await response.text();
  try {
    return (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? `${response.status} ${text}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function loadModels(): Promise<void> {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    notice(ui.apiKey.value ? "The API key was not accepted: check it in Settings." : "This server needs an API key: enter it in Settings.");
    showSettings(true);
    ui.apiKey.focus();
    askedForKey = true;
    return;
  }
  // The key just entered works: the settings opened for it can go.
  if (askedForKey) showSettings(false);
  askedForKey = false;
  if (!response.ok) return notice(`Cannot list models: ${await errorOf(response)}`);
  const { data } = (await response.json()) as { data: { id: string }[] };
  const wanted = ui.model.value || stored.get("model");
  ui.model.replaceChildren(...data.map(({ id }) => new Option(id, id)));
  if (data.some(({ id }) => id === wanted)) ui.model.value = wanted;
  notice(data.length === 0 ? "The server has no models (see models.yaml)." : undefined);
}

function addMessage(role: "user" | "assistant" | "error", text = ""): { element: HTMLElement; content: HTMLElement } {
  const element = document.createElement("article");
  element.className = `message ${role}`;
  const content = document.createElement("div");
  content.className = "content";
  content.textContent = text;
  element.append(content);
  ui.messages.append(element);
  element.scrollIntoView({ block: "end" });
  return { element, content };
}

function showStats(element: HTMLElement, stats: ReplyStats): void {
  const line = document.createElement("p");
  line.className = "stats";
  const parts: string[] = [];
  if (stats.firstTokenMs !== undefined) {
    parts.push(`first token ${Math.round(stats.firstTokenMs)} ms`);
    line.dataset.ttftMs = stats.firstTokenMs.toFixed(1);
  }
  parts.push(`${stats.tokens} tokens`);
  line.dataset.tokens = String(stats.tokens);
  if (stats.tokensPerSecond !== undefined) {
    parts.push(`${stats.tokensPerSecond.toFixed(stats.tokensPerSecond < 10 ? 1 : 0)} tok/s`);
    line.dataset.tokensPerSecond = stats.tokensPerSecond.toFixed(1);
  }
  line.textContent = parts.join(" · ");
  element.append(line);
}

function setRunning(controller: AbortController | undefined): void {
  running = controller;
  ui.send.disabled = controller !== undefined;
  ui.stop.hidden = controller === undefined;
}

/** Sends the conversation and streams the reply into a new message; resolves when it ends, fails or is stopped. */
async function send(text: string): Promise<void> {
  const model = ui.model.value;
  if (!model) return notice("Pick a model first.");
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant");
  const controller = new AbortController();
  setRunning(controller);
  const system = ui.system.value.trim();
  const temperature = ui.temperature.value === "" ? undefined : Number(ui.temperature.value);
  const body = {
    model,
    stream: true,
    stream_options: { include_usage: true },
    messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
    ...(temperature !== undefined && Number.isFinite(temperature) && { temperature }),
  };
  let answer = "";
  const started = performance.now();
  let firstAt: number | undefined;
  let lastAt = started;
  let pieces = 0;
  let usageTokens: number | undefined;
  let frame = 0;
  const render = () => {
    frame = 0;
    renderMarkdown(reply.content, answer);
    reply.element.scrollIntoView({ block: "end" });
  };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorOf(response));
    for await (const data of sseData(response.body!)) {
      // Pieces arrive in bursts: the generation is measured up to the end of the stream, not the last piece.
      lastAt = performance.now();
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data) as {
        choices?: { delta?: { content?: string } }[];
        usage?: { completion_tokens?: number } | null;
        error?: { message?: string };
      };
      if (chunk.error) throw new Error(chunk.error.message ?? "the stream ended with an error");
      if (chunk.usage?.completion_tokens !== undefined) usageTokens = chunk.usage.completion_tokens;
      const piece = chunk.choices?.[0]?.delta?.content;
      if (!piece) continue;
      firstAt ??= lastAt;
      pieces++;
      answer += piece;
      // One render per animation frame, however many pieces arrive in it.
      if (frame === 0) frame = requestAnimationFrame(render);
    }
  } catch (error) {
    if (!controller.signal.aborted) {
      reply.element.classList.add("error");
      answer += `${answer ? "\n\n" : ""}Error: ${(error as Error).message}`;
    }
  } finally {
    if (frame !== 0) cancelAnimationFrame(frame);
    render();
    if (controller.signal.aborted) {
      const stopped = document.createElement("p");
      stopped.className = "stopped";
      stopped.textContent = "(stopped)";
      reply.element.append(stopped);
    }
    const tokens = usageTokens ?? pieces;
    const span = lastAt - (firstAt ?? lastAt);
    showStats(reply.element, {
      firstTokenMs: firstAt === undefined ? undefined : firstAt - started,
      tokens,
      tokensPerSecond: tokens > 1 && span > 0 ? ((tokens - 1) * 1000) / span : undefined,
    });
    if (answer && !reply.element.classList.contains("error")) history.push({ role: "assistant", content: answer });
    setRunning(undefined);
  }
}

/** The `data` of each server-sent event in a response body. */
async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5));
        if (data.length > 0) yield data.join("\n");
        end = buffer.indexOf("\n\n");
      }
    }
  } finally {
    reader.releaseLock();
  }
}

ui.apiKey.value = stored.get("apiKey");
ui.system.value = stored.get("system");
ui.temperature.value = stored.get("temperature");
ui.apiKey.addEventListener("change", () => {
  stored.set("apiKey", ui.apiKey.value.trim());
  void loadModels();
});
ui.system.addEventListener("change", () => stored.set("system", ui.system.value));
ui.temperature.addEventListener("change", () => stored.set("temperature", ui.temperature.value));
ui.model.addEventListener("change", () => stored.set("model", ui.model.value));
ui.settingsToggle.addEventListener("click", () => showSettings(ui.settings.hidden));
ui.newChat.addEventListener("click", () => {
  running?.abort();
  history = [];
  ui.messages.replaceChildren();
  ui.prompt.focus();
});
ui.stop.addEventListener("click", () => running?.abort());
ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || running) return;
  ui.prompt.value = "";
  void send(text);
});
ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
void loadModels().catch((error: unknown) => notice(`Cannot reach the server: ${(error as Error).message}`));
ui.prompt.focus();
