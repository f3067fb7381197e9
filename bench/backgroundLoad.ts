/**
 * `--background-load N`: N busy processes running while the benchmark measures, as a desktop's other programs would; a
 * fractional part is one more process busy that share of the time (busy 20 ms per 20 ms / share).
 */
import type { Subprocess } from "bun";

/** Each child spins in JavaScript; the fractional one sleeps between bursts. */
const busyScript = (share: number) =>
  share >= 1
    ? "for (;;) {}"
    : `const busyMs = 20, idleMs = ${((20 * (1 - share)) / share).toFixed(3)};
       for (;;) { const until = performance.now() + busyMs; while (performance.now() < until) {} await Bun.sleep(idleMs); }`;

export class BackgroundLoad {
  private readonly children: Subprocess[] = [];

  constructor(readonly processes: number) {}

  start(): void {
    const whole = Math.floor(this.processes);
    const part = this.processes - whole;
    const shares = [...Array.from({ length: whole }, () => 1), ...(part > 0.01 ? [part] : [])];
    for (const share of shares)
      this.children.push(Bun.spawn([process.execPath, "-e", busyScript(share)], { stdout: "ignore", stderr: "ignore", stdin: "ignore" }));
  }

  async stop(): Promise<void> {
    for (const child of this.children) child.kill("SIGKILL");
    await Promise.all(this.children.map((child) => child.exited));
    this.children.length = 0;
  }

  describe(): string {
    return this.processes > 0 ? `${this.processes} busy process(es) in the background` : "no background load";
  }
}
