/**
 * `llamaport run MODEL [PROMPT]`: one answer streamed to stdout, or a chat with history. Like Ollama's CLI it talks to
 * the server at --host/--port when one runs there (the model stays loaded for the next run, and the server's settings
 * apply); with none it loads the model in this process, so it works on its own too.
 */
import { createInterface } from "node:readline";
import { isPullSource } from "../../engine/download/sources.ts";
import type { ChatMessage } from "../../engine/types.ts";
import { type LocalEngine, openLocalEngine } from "../localEngine.ts";
import type { ServeSettings } from "../parseArgs.ts";
import { ServerClient, ServerError } from "../serverClient.ts";
import { pullWithProgress } from "./pull.ts";

interface AnswerStats {
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  seconds: number;
}

/** Where answers come from: a running server, or an engine in this process. */
interface ChatBackend {
  readonly description: string;
  /** The name to chat with; a source is pulled first. Undefined when the user stopped the pull. */
  prepare(model: string): Promise<string | undefined>;
  /** Streams the answer's text to `onText`; ends early, without an error, when `signal` aborts. */
  answer(model: string, messages: ChatMessage[], signal: AbortSignal, onText: (text: string) => void): Promise<AnswerStats | undefined>;
  close(): Promise<void>;
}

export interface RunOptions {
  /** Print token counts and speed after each answer (to stderr). */
  verbose: boolean;
}

export async function run(model: string, prompt: string | undefined, settings: ServeSettings, options: RunOptions): Promise<number> {
  const server = await ServerClient.find(settings);
  const backend: ChatBackend = server ? new ServerChat(server, settings) : new LocalChat(await openLocalEngine(settings));
  try {
    const name = await backend.prepare(model);
    if (name === undefined) return 130;
    // Text piped in is the prompt (when none is given), as with Ollama: `cat notes.txt | llamaport run demo`.
    const text = prompt ?? (process.stdin.isTTY ? undefined : await new Response(Bun.stdin.stream()).text());
    if (text !== undefined) {
      if (!text.trim()) {
        process.stderr.write("llamaport: nothing to answer: give a PROMPT, or pipe text in\n");
        return 2;
      }
      return await answerOnce(backend, name, text, options);
    }
    return await chat(backend, name, options);
  } finally {
    await backend.close();
  }
}

async function answerOnce(backend: ChatBackend, model: string, text: string, options: RunOptions): Promise<number> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  try {
    const stats = await backend.answer(model, [{ role: "user", content: text }], controller.signal, (piece) => process.stdout.write(piece));
    process.stdout.write("\n");
    if (options.verbose && stats) process.stderr.write(describeStats(stats));
    return controller.signal.aborted ? 130 : 0;
  } finally {
    process.off("SIGINT", stop);
  }
}

/** The interactive chat: every line is a user turn, answered with the whole conversation so far. */
async function chat(backend: ChatBackend, model: string, options: RunOptions): Promise<number> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: ">>> ", terminal: true });
  const history: ChatMessage[] = [];
  let answering: AbortController | undefined;
  // Ctrl-C: stops the answer being written; at the prompt, says how to leave (as Ollama does).
  rl.on("SIGINT", () => {
    if (answering) answering.abort();
    else {
      process.stdout.write("\nUse Ctrl-D or /bye to leave.\n");
      rl.prompt();
    }
  });
  process.stdout.write(`Chatting with ${model} (${backend.description}). Ctrl-C stops an answer; Ctrl-D or /bye leaves; /clear forgets.\n`);
  rl.prompt();
  for await (const line of rl) {
    const text = line.trim();
    if (text === "/bye") break;
    if (text === "/clear") {
      history.length = 0;
      process.stdout.write("(the conversation is forgotten)\n");
    } else if (text) {
      history.push({ role: "user", content: text });
      answering = new AbortController();
      let reply = "";
      try {
        const stats = await answerFitting(backend, model, history, answering.signal, (piece) => {
          reply += piece;
          process.stdout.write(piece);
        });
        process.stdout.write(answering.signal.aborted ? "\n(stopped)\n" : "\n");
        if (options.verbose && stats) process.stderr.write(describeStats(stats));
        // What was shown stays in the conversation, a stopped answer too.
        if (reply) history.push({ role: "assistant", content: reply });
        else history.pop();
      } catch (error) {
        process.stdout.write("\n");
        process.stderr.write(`llamaport: ${(error as Error).message}\n`);
        history.pop();
      } finally {
        answering = undefined;
      }
    }
    rl.prompt();
  }
  rl.close();
  process.stdout.write("\n");
  return 0;
}

/**
 * An answer to the conversation; when it no longer fits the model's context, the oldest turns are left out (and the
 * user told), as Ollama does, until only the last message is left.
 */
async function answerFitting(
  backend: ChatBackend,
  model: string,
  history: ChatMessage[],
  signal: AbortSignal,
  onText: (text: string) => void,
): Promise<AnswerStats | undefined> {
  for (;;) {
    try {
      return await backend.answer(model, history, signal, onText);
    } catch (error) {
      if (!/prompt too long/.test((error as Error).message) || history.length <= 1) throw error;
      history.splice(0, history.length > 2 ? 2 : 1);
      process.stderr.write("(the conversation outgrew the context: its oldest turn is left out)\n");
    }
  }
}

function describeStats(stats: AnswerStats): string {
  const rate = stats.seconds > 0 ? ` (${(stats.completionTokens / stats.seconds).toFixed(1)} tokens/s)` : "";
  return `prompt: ${stats.promptTokens} tokens (${stats.cachedTokens} cached); answer: ${stats.completionTokens} tokens in ${stats.seconds.toFixed(2)} s${rate}\n`;
}

/** Answers from an engine in this process. */
class LocalChat implements ChatBackend {
  readonly description = "in this process: no server at --host/--port";

  constructor(private readonly local: LocalEngine) {}

  async prepare(model: string): Promise<string | undefined> {
    const registry = this.local.engine.registry;
    const known = registry.find(model) ?? registry.find(model.replace(/:latest$/, ""));
    if (known) return known.name;
    if (!isPullSource(model)) registry.resolve(model); // throws "not found; available: ..."
    return (await pullWithProgress(this.local.engine, model))?.model;
  }

  async answer(model: string, messages: ChatMessage[], signal: AbortSignal, onText: (text: string) => void) {
    const started = performance.now();
    try {
      for await (const event of this.local.engine.chat({ model, messages: [...messages], signal })) {
        if (event.type === "text") onText(event.text);
        else if (event.type === "done")
          return {
            promptTokens: event.promptTokens,
            cachedTokens: event.cachedTokens,
            completionTokens: event.completionTokens,
            seconds: (performance.now() - started) / 1000,
          };
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.local[Symbol.asyncDispose]();
  }
}

/** Answers from the running server, through its OpenAI chat completions route (streamed, with usage). */
class ServerChat implements ChatBackend {
  readonly description: string;

  constructor(
    private readonly server: ServerClient,
    private readonly settings: ServeSettings,
  ) {
    this.description = `the server at ${server.url}`;
  }

  async prepare(model: string): Promise<string | undefined> {
    if (await this.knows(model)) return model;
    if (!isPullSource(model)) {
      const { models } = await this.server.json<{ models: { name: string }[] }>("/api/tags");
      const names = models.map((m) => m.name.replace(/:latest$/, ""));
      throw new ServerError(404, `model "${model}" not found on the server at ${this.server.url}; it has: ${names.join(", ") || "(none)"}`);
    }
    // Pulled here, into the models.yaml this CLI finds; the server serves it once it has read that file again.
    await using local = await openLocalEngine(this.settings);
    const pulled = await pullWithProgress(local.engine, model);
    if (!pulled) return undefined;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await Bun.sleep(100))
      if (await this.knows(pulled.model)) return pulled.model;
    throw new Error(
      `pulled ${pulled.model} into ${pulled.savedTo ?? "the registry"}, but the server at ${this.server.url} does not serve it: it reads another models.yaml (stop it, or start it with --models ${pulled.savedTo ?? "FILE"})`,
    );
  }

  private async knows(model: string): Promise<boolean> {
    try {
      await this.server.json("/api/show", { model });
      return true;
    } catch (error) {
      if (error instanceof ServerError && error.status === 404) return false;
      throw error;
    }
  }

  async answer(model: string, messages: ChatMessage[], signal: AbortSignal, onText: (text: string) => void) {
    const started = performance.now();
    let stats: AnswerStats | undefined;
    try {
      const response = await this.server.request("/v1/chat/completions", {
        method: "POST",
        body: JSON.stringify({ model, messages, stream: true, stream_options: { include_usage: true } }),
        signal,
      });
      for await (const data of serverSentData(response.body!)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data) as ChatChunk;
        if (chunk.error) throw new Error(chunk.error.message);
        const text = chunk.choices?.[0]?.delta?.content;
        if (text) onText(text);
        if (chunk.usage)
          stats = {
            promptTokens: chunk.usage.prompt_tokens,
            cachedTokens: chunk.usage.prompt_tokens_details?.cached_tokens ?? 0,
            completionTokens: chunk.usage.completion_tokens,
            seconds: (performance.now() - started) / 1000,
          };
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
    return stats;
  }

  async close(): Promise<void> {}
}

interface ChatChunk {
  choices?: { delta?: { content?: string } }[];
  usage?: { prompt_tokens: number; completion_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
  error?: { message: string };
}

/** The `data:` payloads of a Server-Sent Events body. */
async function* serverSentData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const bytes of body) {
    buffered += decoder.decode(bytes, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) yield data;
      end = buffered.indexOf("\n\n");
    }
  }
}
