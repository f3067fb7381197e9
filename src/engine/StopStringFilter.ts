/**
 * Finds stop strings in streamed text at character precision. node-llama-cpp's own stop triggers work per token, so a
 * token holding text before the stop (" big" for the stop "big") would lose that text; OpenAI and Ollama keep it.
 */
export class StopStringFilter {
  private held = "";
  private readonly longest: number;
  /** The stop string found, once one is. */
  stopped?: string;

  constructor(private readonly stops: readonly string[]) {
    this.longest = Math.max(...stops.map((s) => s.length));
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
    for (let length = Math.min(this.longest - 1, buffer.length); length > 0; length--) {
      const tail = buffer.slice(buffer.length - length);
      if (this.stops.some((stop) => stop.startsWith(tail))) return length;
    }
    return 0;
  }
}
