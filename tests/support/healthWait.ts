/**
 * Test support: how long /health waits while some work runs. On a shared machine a wait can be long only because the
 * server got no CPU, so each wait is also measured in the CPU time the server's main thread used meanwhile (Linux:
 * /proc/<pid>/task/<pid>/stat): a blocked event loop is busy, a starved one is not.
 */
import { readFileSync } from "node:fs";

/** CPU time used so far by the main thread of process `pid`, in ms (10 ms steps); NaN where /proc is missing. */
export function mainThreadCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

export interface HealthWaits {
  /** The longest wall-clock wait for a /health reply. */
  longestMs: number;
  /** The longest wait counting only time the server's main thread was busy (the wall clock where unknown). */
  longestBusyMs: number;
  polls: number;
}

/** Polls `url`/health every few ms until `stop()`; the server runs as process `pid` (this one by default). */
export function pollHealth(url: string, pid = process.pid) {
  const waits: HealthWaits = { longestMs: 0, longestBusyMs: 0, polls: 0 };
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      const cpu = mainThreadCpuMs(pid);
      await (await fetch(`${url}/health`)).arrayBuffer();
      const wait = performance.now() - started;
      const busy = mainThreadCpuMs(pid) - cpu;
      waits.longestMs = Math.max(waits.longestMs, wait);
      waits.longestBusyMs = Math.max(waits.longestBusyMs, Number.isNaN(busy) ? wait : Math.min(wait, busy));
      waits.polls++;
      await Bun.sleep(5);
    }
  })();
  return {
    async stop(): Promise<HealthWaits> {
      running = false;
      await done;
      return waits;
    },
  };
}
