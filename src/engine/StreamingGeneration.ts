/**
 * Bridges the decode loop's callbacks to a pull-based event stream. Text (or a call's arguments) that piles up while the
 * reader is busy is sent as one delta, except when tokens are reported: then every piece stays its own event, with its
 * tokens.
 */
import type { ToolCall, ToolCallEvent } from "./toolTypes.ts";
import type { GeneratedToken, Generation, GenerationEvent, GenerationStart, GenerationSummary } from "./types.ts";

/** What a producer writes into; it runs once, when the generation is first iterated. */
export interface GenerationSink {
  /** The prompt is ready and a sequence is leased; call once, before any text. */
  start(info: Omit<GenerationStart, "type">): void;
  /** A piece of text; with `tokens` (reported tokens only) it is kept as its own event. */
  text(piece: string, tokens?: GeneratedToken[]): void;
  /** Aborted when the reader stops early (a client that went away): the producer must stop decoding. */
  readonly signal: AbortSignal;
}

/** What a producer that generates tool calls writes into, besides text. */
export interface ToolCallSink {
  /** A call begins (after any text before it). */
  toolCallStart(index: number, id: string, name: string): void;
  toolCallArguments(index: number, text: string): void;
  toolCallEnd(index: number, call: ToolCall, argumentsJson: string): void;
}

export type GenerationProducer = (sink: GenerationSink & ToolCallSink) => Promise<GenerationSummary>;

export class StreamingGeneration implements Generation, GenerationSink, ToolCallSink {
  private startEvent?: GenerationStart;
  /**
   * Events not yet read that are not coalesced: pieces with tokens (a generation either reports tokens or not) and
   * tool-call events, in order; pending text is moved in here before them.
   */
  private readonly queued: GenerationEvent[] = [];
  private pending = "";
  private summary?: GenerationSummary;
  private failure?: { error: unknown };
  private wake?: () => void;
  private iterated = false;
  private readonly controller = new AbortController();

  constructor(
    readonly model: string,
    private readonly producer: GenerationProducer,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  start(info: Omit<GenerationStart, "type">): void {
    this.startEvent = { type: "start", ...info };
    this.notify();
  }

  text(piece: string, tokens?: GeneratedToken[]): void {
    if (tokens) this.enqueue({ type: "text", text: piece, tokens });
    else {
      this.pending += piece;
      this.notify();
    }
  }

  toolCallStart(index: number, id: string, name: string): void {
    this.enqueue({ type: "toolCallStart", index, id, name });
  }

  toolCallArguments(index: number, text: string): void {
    const last = this.queued.at(-1);
    if (last?.type === "toolCallArguments" && last.index === index && this.pending.length === 0) {
      last.text += text;
      this.notify();
    } else this.enqueue({ type: "toolCallArguments", index, text });
  }

  toolCallEnd(index: number, call: ToolCall, argumentsJson: string): void {
    this.enqueue({ type: "toolCallEnd", index, call, argumentsJson });
  }

  private enqueue(event: ToolCallEvent | (GenerationEvent & { type: "text" })): void {
    if (this.pending.length > 0) {
      this.queued.push({ type: "text", text: this.pending });
      this.pending = "";
    }
    this.queued.push(event);
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<GenerationEvent> {
    if (this.iterated) throw new Error("a Generation can only be read once");
    this.iterated = true;
    this.producer(this).then(
      (summary) => {
        this.summary = summary;
        this.notify();
      },
      (error: unknown) => {
        this.failure = { error };
        this.notify();
      },
    );
    let started = false;
    let finished = false;
    try {
      for (;;) {
        if (!started && this.startEvent) {
          started = true;
          yield this.startEvent;
          continue;
        }
        if (started && this.queued.length > 0) {
          yield this.queued.shift()!;
          continue;
        }
        if (started && this.pending.length > 0) {
          const text = this.pending;
          this.pending = "";
          yield { type: "text", text };
          continue;
        }
        if (this.failure) throw this.failure.error;
        if (this.summary) {
          finished = true;
          yield this.summary;
          return;
        }
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
      }
    } finally {
      // The reader left before the end (client disconnect, plugin error): stop decoding and free the sequence.
      if (!finished) this.controller.abort();
    }
  }

  async collect(): Promise<{
    text: string;
    toolCalls: ToolCall[];
    tokens?: GeneratedToken[];
    prompt?: GeneratedToken[];
    summary: GenerationSummary;
  }> {
    let text = "";
    const toolCalls: ToolCall[] = [];
    let tokens: GeneratedToken[] | undefined;
    let prompt: GeneratedToken[] | undefined;
    for await (const event of this) {
      if (event.type === "start") prompt = event.prompt;
      else if (event.type === "text") {
        text += event.text;
        if (event.tokens) {
          tokens ??= [];
          for (const token of event.tokens) tokens.push(token);
        }
      } else if (event.type === "toolCallEnd") toolCalls.push(event.call);
      else if (event.type === "done") return { text, toolCalls, ...(tokens && { tokens }), ...(prompt && { prompt }), summary: event };
    }
    throw new Error("generation ended without a summary");
  }

  private notify(): void {
    const wake = this.wake;
    if (wake) {
      this.wake = undefined;
      wake();
    }
  }
}
