/**
 * The output path of one generation: tokens → text (the streaming detokenizer) → stop strings → the trailing
 * whitespace a JSON grammar leaves → the sink, with, when the request asks for them, the tokens each piece was made of.
 */
import type { LlamaModel, Token } from "node-llama-cpp";
import { reportToken } from "./reportToken.ts";
import { StopStringFilter } from "./StopStringFilter.ts";
import { StreamingDetokenizer } from "./StreamingDetokenizer.ts";
import type { GenerationSink } from "./StreamingGeneration.ts";
import type { TokenPieces } from "./TokenPieces.ts";
import type { GeneratedToken } from "./types.ts";

export interface OutputOptions {
  /** The client's stop strings and the template's or grammar's, alike. */
  stops: readonly string[];
  /** Hold back trailing whitespace and drop it at the end (node-llama-cpp's JSON grammars ask for it). */
  trimTrailingWhitespace: boolean;
}

/** Where generated tokens come from: the model (for text) and the prompt (their context). */
export interface TokenSource {
  model: LlamaModel;
  prompt: readonly Token[];
  /** Set when tokens are reported. */
  pieces?: TokenPieces;
  /** Alternatives per reported token, when log probabilities are asked for. */
  logprobs?: number;
}

/** A reported token and where its text lies in the stream of detokenized text. */
interface PlacedToken {
  token: GeneratedToken;
  start: number;
  end: number;
}

export class GenerationOutput {
  private readonly filter?: StopStringFilter;
  /** Whitespace held back at the end of what passed the stop strings. */
  private whitespace = "";
  /** Characters handed to the filter so far, and characters sent to the sink: the sent text is a prefix of the pushed. */
  private pushed = 0;
  private sent = 0;
  /** Reported tokens whose text has not been sent yet, oldest first. */
  private readonly placed: PlacedToken[] = [];
  private detokenizer?: StreamingDetokenizer;
  /** Reported tokens the detokenizer still holds (the start of a character), oldest first. */
  private readonly awaiting: GeneratedToken[] = [];
  private source?: TokenSource;

  constructor(
    private readonly sink: GenerationSink,
    private readonly options: OutputOptions,
    /** Whether tokens are reported (then `push` gets them and every piece goes out with its tokens). */
    private readonly reportTokens: boolean,
  ) {
    if (options.stops.length > 0) this.filter = new StopStringFilter(options.stops);
  }

  /** An output fed with tokens (`token`) rather than text. */
  static forTokens(sink: GenerationSink, options: OutputOptions, source: TokenSource): GenerationOutput {
    const output = new GenerationOutput(sink, options, source.pieces !== undefined);
    output.source = source;
    output.detokenizer = new StreamingDetokenizer(source.model, source.prompt);
    return output;
  }

  /** A generated token (with node-llama-cpp's probabilities when asked for). Returns false once a stop string is found. */
  token(token: Token, probabilities?: ReadonlyMap<Token, number>): boolean {
    const detokenizer = this.detokenizer!;
    const piece = detokenizer.push(token);
    const pieces = this.source!.pieces;
    if (!pieces) return piece === "" || this.push(piece);
    this.awaiting.push(reportToken(pieces, token, this.source!.logprobs, probabilities));
    const released = detokenizer.released;
    return (piece === "" && released === 0) || this.push(piece, this.awaiting.splice(0, released));
  }

  /** The stop string found, once one is. */
  get stopped(): string | undefined {
    return this.filter?.stopped;
  }

  /** A piece of text and the tokens it was made of. Returns false once a stop string has been found. */
  push(piece: string, tokens?: readonly GeneratedToken[]): boolean {
    if (tokens) {
      for (const token of tokens) this.placed.push({ token, start: this.pushed, end: this.pushed + piece.length });
    }
    this.pushed += piece.length;
    if (!this.filter) this.send(piece);
    else {
      const safe = this.filter.push(piece);
      if (safe || this.reportTokens) this.send(safe);
      if (this.filter.stopped) return false;
    }
    return true;
  }

  /** The end of generation: sends what is left (text the detokenizer holds included), minus trailing whitespace. */
  end(): void {
    if (this.detokenizer && !this.filter?.stopped) this.push(this.detokenizer.flush(), this.source?.pieces ? this.awaiting : undefined);
    if (this.filter && !this.filter.stopped) {
      const held = this.filter.flush();
      if (held) this.send(held);
    }
    this.whitespace = "";
    // Tokens still unsent: those whose text was cut by a stop string or dropped whitespace go out with no text.
    if (this.placed.length > 0) this.sink.text("", this.takeTokens(Number.POSITIVE_INFINITY, this.stoppedAt()));
  }

  private send(text: string): void {
    let out = text;
    if (this.options.trimTrailingWhitespace) {
      const trimmed = text.trimEnd();
      if (trimmed.length === 0) {
        this.whitespace += text;
        out = "";
      } else {
        out = this.whitespace + text.slice(0, trimmed.length);
        this.whitespace = text.slice(trimmed.length);
      }
    }
    this.sent += out.length;
    if (!this.reportTokens) {
      if (out) this.sink.text(out);
      return;
    }
    const tokens = this.takeTokens(this.sent, this.sent);
    if (out || tokens.length > 0) this.sink.text(out, tokens);
  }

  /** Where a stop string cut the text (tokens starting after it are part of the stop string), if one did. */
  private stoppedAt(): number {
    return this.filter?.stopped ? this.sent + this.whitespace.length : Number.POSITIVE_INFINITY;
  }

  /** Tokens whose text begins before `sent` (or is empty and lies within it), as long as they begin before `cut`. */
  private takeTokens(sent: number, cut: number): GeneratedToken[] {
    const out: GeneratedToken[] = [];
    let taken = 0;
    for (const placed of this.placed) {
      const begins = placed.start < sent || placed.end <= sent;
      if (!begins) break;
      taken++;
      if (placed.start < cut || placed.start === placed.end) out.push(placed.token);
    }
    this.placed.splice(0, taken);
    return out;
  }
}
