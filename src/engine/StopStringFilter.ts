/**
 * Finds stop strings in streamed text at character precision. node-llama-cpp's own stop triggers work per token, so a
 * token holding text before the stop (" big" for the stop "big") would lose that text; OpenAI and Ollama keep it.
 *
 * Linear in the text: each stop string keeps a Knuth-Morris-Pratt state (how much of it the text seen so far ends
 * with), so a character costs O(1) amortized per stop string, and setting up costs O(total stop length). Only the
 * longest tail that could still grow into a stop string is held back.
 */
export class StopStringFilter {
  private held = "";
  /** The stop string found, once one is. */
  stopped?: string;

  /** For each stop string: failure[k - 1] is the longest proper border of its first k characters. */
  private readonly failure: Int32Array[];
  /** For each stop string: how many of its first characters the text seen so far ends with. */
  private readonly matched: Int32Array;

  /** `stops`: the client's and the chat template's or grammar's alike; the caller tells them apart by `stopped`. */
  constructor(private readonly stops: readonly string[]) {
    this.failure = stops.map(failureFunction);
    this.matched = new Int32Array(stops.length);
  }

  /** Text that is safe to send: everything except a tail that might still grow into a stop string. */
  push(text: string): string {
    const { stops, failure, matched } = this;
    const heldLength = this.held.length;
    // Where the earliest stop string found in held + text starts (the one a whole-buffer search would find first).
    let cut = -1;
    for (let i = 0; i < text.length; i++) {
      const char = text.charCodeAt(i);
      for (let s = 0; s < stops.length; s++) {
        const stop = stops[s]!;
        const border = failure[s]!;
        let k = matched[s]!;
        while (k > 0 && stop.charCodeAt(k) !== char) k = border[k - 1]!;
        if (stop.charCodeAt(k) === char) k++;
        if (k === stop.length) {
          const start = heldLength + i + 1 - k;
          if (cut < 0 || start < cut) {
            cut = start;
            this.stopped = stop;
          }
          k = border[k - 1]!;
        }
        matched[s] = k;
      }
    }
    if (cut >= 0) {
      const before = (this.held + text).slice(0, cut);
      this.held = "";
      return before;
    }
    let keep = 0;
    for (let s = 0; s < stops.length; s++) if (matched[s]! > keep) keep = matched[s]!;
    if (keep === 0) {
      if (heldLength === 0) return text;
      const all = this.held + text;
      this.held = "";
      return all;
    }
    const all = this.held + text;
    this.held = all.slice(all.length - keep);
    return all.slice(0, all.length - keep);
  }

  /** Text still held back when generation ends without a stop. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    this.matched.fill(0);
    return rest;
  }
}

/** The KMP prefix function of `pattern`: for each length k, the longest proper prefix that is also a suffix. */
function failureFunction(pattern: string): Int32Array {
  const border = new Int32Array(pattern.length);
  let k = 0;
  for (let i = 1; i < pattern.length; i++) {
    const char = pattern.charCodeAt(i);
    while (k > 0 && pattern.charCodeAt(k) !== char) k = border[k - 1]!;
    if (pattern.charCodeAt(k) === char) k++;
    border[i] = k;
  }
  return border;
}
