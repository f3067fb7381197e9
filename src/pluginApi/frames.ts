/**
 * Turns a generation into a protocol's stream items. A plugin declares its per-token chunk once, as an object with a
 * `TEXT` placeholder; the template is serialised once per request, so each token costs one JSON-escaped string and
 * no object. Per-token data that has no fixed shape (log probabilities, a running sequence number) goes in `slot`s,
 * filled from each text event. Tool calls stream the same way: a template per call for its argument pieces.
 * @module
 */
import type { ToolCallEnd, ToolCallStart } from "../engine/toolTypes.ts";
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

/** How one protocol streams a generation. Only `text` and `done` are required; tool calls need the `toolCall*` hooks. */
export interface StreamFormat {
  /** Items sent once the engine has a sequence and knows the prompt's size, before any text (a role chunk, `message_start`). */
  start?(start: GenerationStart): unknown[];
  /** Items before the first piece of a run of text (opening a text block or output item). */
  textStart?(): unknown[];
  /** Each piece of text, through a template made once per request. */
  text: ChunkTemplate;
  /** Items after the last piece of a run of text (before a tool call or the end), with the whole run's text. */
  textEnd?(text: string): unknown[];
  /** Items when a tool call begins (its id and name are known). */
  toolCallStart?(call: ToolCallStart): unknown[];
  /** The template for the argument pieces of a call, made once per call (after `toolCallStart`). Without it, pieces are not sent. */
  toolCallArguments?(call: ToolCallStart): ChunkTemplate;
  /** Items when a call is complete, with its parsed arguments. A call cut short (max tokens) gets none: close it in `done`. */
  toolCallEnd?(end: ToolCallEnd): unknown[];
  /** The last items, from the generation's summary (finish reason, usage, a `[DONE]` marker). */
  done(summary: GenerationSummary): unknown[];
}

/**
 * The stream items of a generation in a protocol's format; return it from a handler inside `sse()` or `ndjson()`.
 * Stopping the iteration (the client went away) stops the generation.
 * @example return sse(frames(generation, { text: template({ delta: TEXT }), done: (s) => [{ finish: s.finishReason }] }));
 */
export async function* frames(generation: Generation, format: StreamFormat): AsyncGenerator<unknown> {
  const framer = new Framer(format);
  for await (const event of generation) yield* framer.items(event);
}

/** One generation's framing state: whether a run of text is open (and its text), the current call's argument template. */
class Framer {
  private readonly handlesTools: boolean;
  private inText = false;
  private text = "";
  private argumentsTemplate?: ChunkTemplate;

  constructor(private readonly format: StreamFormat) {
    this.handlesTools = format.toolCallStart !== undefined || format.toolCallEnd !== undefined;
  }

  *items(event: GenerationEvent): Generator<unknown> {
    const { format } = this;
    if (event.type === "text") {
      if (!this.inText) {
        this.inText = true;
        this.text = "";
        if (format.textStart) yield* format.textStart();
      }
      if (format.textEnd) this.text += event.text;
      yield format.text.render(event);
      return;
    }
    if (this.inText && event.type !== "start" && event.type !== "toolCallArguments") {
      this.inText = false;
      if (format.textEnd) yield* format.textEnd(this.text);
    }
    if (event.type === "start") {
      if (format.start) yield* format.start(event);
    } else if (event.type === "done") yield* format.done(event);
    else if (!this.handlesTools)
      throw new Error("this stream format has no toolCallStart / toolCallEnd hooks, and the model called a tool");
    else if (event.type === "toolCallStart") {
      const items = format.toolCallStart?.(event);
      this.argumentsTemplate = format.toolCallArguments?.(event);
      if (items) yield* items;
    } else if (event.type === "toolCallArguments") {
      if (this.argumentsTemplate) yield this.argumentsTemplate.render(event.text);
    } else if (format.toolCallEnd) yield* format.toolCallEnd(event);
  }
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
  const framers = generations.map((_, index) => new Framer(format(index)));
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
      yield* framers[index]!.items(result.value);
    }
  } finally {
    // Left early (client gone, a failure): the generations still running stop and free their sequences.
    for (const index of pending.keys()) void iterators[index]!.return?.(undefined);
  }
  yield* end(summaries);
}
