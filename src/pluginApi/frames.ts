/**
 * Turns a generation into a protocol's stream items. A plugin declares its per-token chunk once, as an object with a
 * `TEXT` placeholder; the template is serialised once per request, so each token costs one JSON-escaped string and
 * no object. Per-token data that has no fixed shape (log probabilities) goes in `slot`s, filled from each text event.
 * @module
 */
import type { Generation, GenerationEvent, GenerationStart, GenerationSummary, TextDelta } from "../engine/types.ts";
import { SseMessage } from "./streams.ts";

/** Stands for the generated text in a chunk template; replaced by the text, JSON-escaped. */
export const TEXT = "\u0000llamaport:text\u0000";
/** Stands for the current time in a chunk template, as an ISO 8601 string (Ollama's per-line `created_at`). */
export const NOW = "\u0000llamaport:now\u0000";

/**
 * A value computed per text event: `fill(delta)` is called for each piece of text and its result, JSON-serialised,
 * takes the slot's place in the chunk. Made with `slot()`.
 */
export class ChunkSlot {
  constructor(readonly fill: (delta: TextDelta) => unknown) {}
}

/**
 * Declare a per-event value in a chunk template, e.g. the log probabilities of the tokens in this piece of text.
 * @example template({ delta: { content: TEXT }, logprobs: slot((delta) => ({ content: delta.tokens ?? [] })) })
 */
export function slot(fill: (delta: TextDelta) => unknown): ChunkSlot {
  return new ChunkSlot(fill);
}

const slotNames = new Map([
  [JSON.stringify(TEXT), "text"],
  [JSON.stringify(NOW), "now"],
] as const);
/** Where a `slot()` stood in the serialised shape: its index among the template's slots. */
const computedSlot = /"\\u0000llamaport:slot:(\d+)\\u0000"/; // as JSON.stringify escapes the NULs
const slotPattern = new RegExp(
  [...[...slotNames.keys()].map((quoted) => quoted.replace(/[\\^$.*+?()[\]{}|]/g, "\\$&")), computedSlot.source].join("|"),
  "g",
);

/** A chunk serialised once; `render` fills in the placeholders. */
export class ChunkTemplate {
  private readonly parts: string[] = [];
  private readonly slots: ("text" | "now" | ChunkSlot)[] = [];
  private stampMs = 0;
  private stamp = "";

  constructor(
    shape: unknown,
    /** SSE event name for every chunk, e.g. Anthropic's `content_block_delta`. */
    readonly event?: string,
  ) {
    const computed: ChunkSlot[] = [];
    const json = JSON.stringify(shape, (_key, value) =>
      value instanceof ChunkSlot ? `\u0000llamaport:slot:${computed.push(value) - 1}\u0000` : value,
    );
    let last = 0;
    for (const match of json.matchAll(slotPattern)) {
      this.parts.push(json.slice(last, match.index));
      const index = computedSlot.exec(match[0])?.[1];
      this.slots.push(index === undefined ? (slotNames.get(match[0] as never) as "text" | "now") : computed[Number(index)]!);
      last = match.index + match[0].length;
    }
    this.parts.push(json.slice(last));
    if (!this.slots.includes("text")) throw new Error("a chunk template needs a TEXT placeholder");
  }

  /** The chunk's JSON for this text (or text event): one string, built from the pieces made in the constructor. */
  render(delta: string | TextDelta): string | SseMessage {
    const text = typeof delta === "string" ? delta : delta.text;
    let out = this.parts[0]!;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i]!;
      if (slot === "text") out += JSON.stringify(text);
      else if (slot === "now") out += this.now();
      else out += JSON.stringify(slot.fill(typeof delta === "string" ? { type: "text", text } : delta)) ?? "null";
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
  for await (const event of generation) yield* itemsOf(event, format);
}

function* itemsOf(event: GenerationEvent, format: StreamFormat): Generator<unknown> {
  if (event.type === "text") yield format.text.render(event);
  else if (event.type === "start") {
    if (format.start) yield* format.start(event);
  } else yield* format.done(event);
}

/**
 * Several generations of one request (`engine.chatChoices`, `completeChoices`) as one stream: each one's events are
 * framed with `format(index)` as they arrive, interleaved; `end` gives the last items once all are done (usage, a
 * `[DONE]` marker). Stopping the iteration, or one generation failing, stops them all.
 * @example return sse(choiceFrames(generations, (i) => ({ text: template({ index: i, text: TEXT }), done: () => [] }), () => ["[DONE]"]));
 */
export async function* choiceFrames(
  generations: readonly Generation[],
  format: (index: number) => StreamFormat,
  end: (summaries: GenerationSummary[]) => unknown[],
): AsyncGenerator<unknown> {
  const formats = generations.map((_, index) => format(index));
  const iterators = generations.map((generation) => generation[Symbol.asyncIterator]());
  const next = (index: number) => iterators[index]!.next().then((result) => ({ index, result }));
  const pending = new Map(iterators.map((_, index) => [index, next(index)]));
  const summaries: GenerationSummary[] = [];
  try {
    while (pending.size > 0) {
      const { index, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(index);
        continue;
      }
      if (result.value.type === "done") summaries[index] = result.value;
      pending.set(index, next(index));
      yield* itemsOf(result.value, formats[index]!);
    }
  } finally {
    // Left early (client gone, a failure): the generations still running stop and free their sequences.
    for (const index of pending.keys()) void iterators[index]!.return?.(undefined);
  }
  yield* end(summaries);
}
