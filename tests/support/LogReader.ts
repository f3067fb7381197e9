/** Test support: reads a child process's stderr as it comes (so the pipe never fills) and waits for a log line. */

/** Reads a child's stderr as it comes, so the pipe never fills and blocks the child, and lets the test wait for a line. */
export class LogReader {
  text = "";
  readonly closed: Promise<void>;
  private wake?: () => void;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.closed = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this.text += decoder.decode(chunk, { stream: true });
        this.wake?.();
      }
      this.wake?.();
    })();
  }

  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    let closed = false;
    void this.closed.then(() => (closed = true));
    for (;;) {
      const match = pattern.exec(this.text);
      if (match) return match;
      if (closed) throw new Error(`the process exited before logging ${pattern}:\n${this.text}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} in ${timeoutMs} ms:\n${this.text}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }
}
