/** Turns generated tokens into text one token at a time, with the prompt's last tokens as context, never sending text that can still change. */
import type { LlamaModel, Token } from "node-llama-cpp";

/** Earlier tokens detokenized together with the new ones: enough for SentencePiece's space and BPE's space clean-up. */
const CONTEXT_TOKENS = 4;
/** A UTF-8 character has at most 4 bytes, so after 4 tokens an incomplete one is really invalid bytes: send it. */
const MAX_INCOMPLETE = 4;
/** Text at the end that may still change: an incomplete UTF-8 character (U+FFFD until its last byte arrives). */
const incompleteTail = /\ufffd+$/;
/**
 * For vocabularies that clean up spaces (GPT-2-style BPE): llama.cpp removes the space in " .", " ,", " !", " ?",
 * " 's", " 'm", " 're", " 've" and both spaces of " ' ", so a space at the end waits for what follows it.
 */
const cleanableTail = /(?: ' | (?:'[rv]?)?)$/;

/**
 * The text it returns joins up to exactly `detokenize([...prompt, ...generated])` minus `detokenize(prompt)`: the text
 * the generated tokens add after the prompt. Detokenizing each token alone would lose SentencePiece's leading space
 * (llama.cpp strips it from the first token of every call), emit half characters of byte-fallback tokens, and miss
 * BPE's space clean-up. The native detokenizer runs over a short window (context + new tokens); text already returned
 * never changes because the tail that could is held back.
 */
export class StreamingDetokenizer {
  /** Context tokens, then tokens whose text is not all returned yet. */
  private readonly window: Token[];
  /** `detokenize(window)`. */
  private windowText: string;
  /** How much of `windowText` has been returned. */
  private returned: number;
  /** For each token whose text is not all returned yet, oldest first: where its text ends in `windowText`. */
  private readonly ends: number[] = [];
  private incompletePushes = 0;
  private readonly cleansSpaces: boolean;
  /** How many tokens the last `push` or `flush` completed: all their text has now been returned. */
  released = 0;

  constructor(
    private readonly model: LlamaModel,
    promptTokens: readonly Token[],
  ) {
    this.window = promptTokens.slice(-CONTEXT_TOKENS);
    this.windowText = this.window.length === 0 ? "" : model.detokenize(this.window, false);
    this.returned = this.windowText.length;
    this.cleansSpaces = model.vocabularyType === "bpe";
  }

  /** The text that can be sent after this token: "" while it may still change (an incomplete character, a space). */
  push(token: Token): string {
    this.window.push(token);
    const all = this.model.detokenize(this.window, false);
    this.ends.push(all.length);
    let keep = this.changeableTail(all);
    if (keep > 0 && all.endsWith("\ufffd")) {
      this.incompletePushes++;
      if (this.incompletePushes >= MAX_INCOMPLETE) {
        keep = 0;
        this.incompletePushes = 0;
      }
    } else this.incompletePushes = 0;
    return this.advance(all, all.length - keep);
  }

  /** At the end of generation: everything still held (it ends in U+FFFD when the model produced invalid UTF-8). */
  flush(): string {
    this.incompletePushes = 0;
    return this.advance(this.windowText, this.windowText.length);
  }

  /** Characters at the end of `all` that more tokens could still change (never any already returned). */
  private changeableTail(all: string): number {
    const incomplete = incompleteTail.exec(all);
    let tail = incomplete ? incomplete[0].length : 0;
    if (tail === 0 && this.cleansSpaces) tail = cleanableTail.exec(all)?.[0].length ?? 0;
    return Math.min(tail, Math.max(0, all.length - this.returned));
  }

  /** Returns `all[returned, upTo)`, counts the tokens now complete, and drops context tokens no longer needed. */
  private advance(all: string, upTo: number): string {
    // Text already returned is never changed by llama.cpp (only the tail held back is); if it ever were, the new text
    // still starts where the returned text ended, so nothing is sent twice.
    const text = upTo > this.returned ? all.slice(this.returned, upTo) : "";
    this.windowText = all;
    this.returned = Math.max(this.returned, upTo);
    // Space clean-up can shorten the text after a token was pushed, so a token counts as complete once any later one is.
    let complete = upTo >= all.length ? this.ends.length : 0;
    for (let i = this.ends.length - 1; complete === 0 && i >= 0; i--) if (this.ends[i]! <= this.returned) complete = i + 1;
    this.ends.splice(0, complete);
    this.released = complete;
    this.trimWindow();
    return text;
  }

  /** Keeps `CONTEXT_TOKENS` tokens before the first incomplete one; their text only shrinks at its start. */
  private trimWindow(): void {
    const drop = this.window.length - CONTEXT_TOKENS - this.ends.length;
    if (drop <= 0) return;
    const kept = this.window.slice(drop);
    const keptText = this.model.detokenize(kept, false);
    if (!this.windowText.endsWith(keptText)) return; // not seen; keeping the longer window is always correct
    const shift = this.windowText.length - keptText.length;
    this.window.splice(0, drop);
    this.windowText = keptText;
    this.returned -= shift;
    for (let i = 0; i < this.ends.length; i++) this.ends[i] = this.ends[i]! - shift;
  }
}
