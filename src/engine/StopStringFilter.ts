/**
 * Finds stop strings in streamed text at character precision. node-llama-cpp's own stop triggers work per token, so a
 * token holding text before the stop (" big" for the stop "big") would lose that text; OpenAI and Ollama keep it.
 */
export class StopStringFilter {
  private held = "";
  /** The stop string found, once one is. */
  stopped?: string;

  /** Proper prefixes of every stop string, longest first, made once so the per-token check allocates nothing. */
  private readonly prefixes: string[];

  /** `stops`: the client's and the chat template's or grammar's alike; the caller tells them apart by `stopped`. */
  constructor(private readonly stops: readonly string[]) {
    const prefixes = new Set<string>();
    for (const stop of stops) for (let length = 1; length < stop.length; length++) prefixes.add(stop.slice(0, length));
    this.prefixes = [...prefixes].sort((a, b) => b.length - a.length);
  }

  /** Text that is safe to send: everything except a tail that might still grow into a stop string. */
  push(text: string): string {
    const buffer = this.held + text;
    let at = -1;
    for (const stop of this.stops) {
      const index = buffer.indexOf(stop);
      if (index >= 0 && (at < 0 || index < at)) {
        at = index;
        this.stopped = stop;
      }
    }
    if (at >= 0) {
      this.held = "";
      return buffer.slice(0, at);
    }
    const keep = this.partialTail(buffer);
    this.held = keep === 0 ? "" : buffer.slice(buffer.length - keep);
    return keep === 0 ? buffer : buffer.slice(0, buffer.length - keep);
  }

  /** Text still held back when generation ends without a stop. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest suffix of `buffer` that is a proper prefix of some stop string. */
  private partialTail(buffer: string): number {
    for (const prefix of this.prefixes) if (buffer.endsWith(prefix)) return prefix.length;
    return 0;
  }
}
