/**
 * Turns a generation into a protocol's stream items. A plugin declares its per-token chunk once, as an object with a
 * `TEXT` placeholder; the template is serialised once per request, so each token costs one JSON-escaped string and
 * no object.
 * @module
 */
import type { Generation, GenerationStart, GenerationSummary } from "../engine/types.ts";
import { SseMessage } from "./streams.ts";

/** Stands for the generated text in a chunk template; replaced by the text, JSON-escaped. */
export const TEXT = "\u0000llamaport:text\u0000";
/** Stands for the current time in a chunk template, as an ISO 8601 string (Ollama's per-line `created_at`). */
export const NOW = "\u0000llamaport:now\u0000";

const slotNames = new Map([
  [JSON.stringify(TEXT), "text"],
  [JSON.stringify(NOW), "now"],
] as const);
const slotPattern = new RegExp([...slotNames.keys()].map((quoted) => quoted.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")).join("|"), "g");

/** A chunk serialised once; `render` fills in the placeholders. */
export class ChunkTemplate {
  private readonly parts: string[] = [];
  private readonly slots: ("text" | "now")[] = [];
  private stampMs = 0;
  private stamp = "";

  constructor(
    shape: unknown,
    /** SSE event name for every chunk, e.g. Anthropic's `content_block_delta`. */
    readonly event?: string,
  ) {
    const json = JSON.stringify(shape);
    let last = 0;
    for (const match of json.matchAll(slotPattern)) {
      this.parts.push(json.slice(last, match.index));
      this.slots.push(slotNames.get(match[0] as never) as "text" | "now");
      last = match.index + match[0].length;
    }
    this.parts.push(json.slice(last));
    if (!this.slots.includes("text")) throw new Error("a chunk template needs a TEXT placeholder");
  }

  /** The chunk's JSON for this text: one string, built from the pieces made in the constructor. */
  render(text: string): string | SseMessage {
    let out = this.parts[0]!;
    for (let i = 0; i < this.slots.length; i++) {
      out += this.slots[i] === "text" ? JSON.stringify(text) : this.now();
      out += this.parts[i + 1]!;
    }
    return this.event === undefined ? out : new SseMessage(this.event, out);
  }

  /** Tokens arrive faster than the clock's millisecond: the timestamp is formatted only when it changes. */
  private now(): string {
    const ms = Date.now();
    if (ms !== this.stampMs) {
      this.stampMs = ms;
      this.stamp = `"${new Date(ms).toISOString()}"`;
    }
    return this.stamp;
  }
}

/**
 * Declare a per-token chunk: an object (or array) with `TEXT` where the generated text goes, and optionally `NOW`.
 * @example template({ choices: [{ index: 0, delta: { content: TEXT } }] })
 */
export function template(shape: unknown, options: { event?: string } = {}): ChunkTemplate {
  return new ChunkTemplate(shape, options.event);
}

/** How one protocol streams a generation. */
export interface StreamFormat {
  /** Items sent once the engine has a sequence and knows the prompt's size, before any text (a role chunk, `message_start`). */
  start?(start: GenerationStart): unknown[];
  /** Each piece of text, through a template made once per request. */
  text: ChunkTemplate;
  /** The last items, from the generation's summary (finish reason, usage, a `[DONE]` marker). */
  done(summary: GenerationSummary): unknown[];
}

/**
 * The stream items of a generation in a protocol's format; return it from a handler inside `sse()` or `ndjson()`.
 * Stopping the iteration (the client went away) stops the generation.
 * @example return sse(frames(generation, { text: template({ delta: TEXT }), done: (s) => [{ finish: s.finishReason }] }));
 */
export async function* frames(generation: Generation, format: StreamFormat): AsyncGenerator<unknown> {
  for await (const event of generation) {
    if (event.type === "text") yield format.text.render(event.text);
    else if (event.type === "start") {
      if (format.start) yield* format.start(event);
    } else yield* format.done(event);
  }
}
