/**
 * How many threads a decode step may use right now: the cores other programs leave free, measured from the CPU time
 * the whole machine and this process used since the last look.
 *
 * Why: ggml's CPU threads wait for each other at every graph node by spinning (`ggml_barrier`, no yield), and
 * node-llama-cpp attaches no threadpool, so each decode starts its workers afresh. With more threads than free cores,
 * a thread that the kernel preempts stalls all the others at the next barrier for a time slice: measured here on 2
 * cores with other work running (load ~7), a 135M model decoded 1.3 tokens/s on 2 threads against 61 on 1. llama-server
 * collapses the same way. A thread count fixed at start cannot be right both on a quiet machine (where 2 threads are
 * ~1.6x faster for that model) and a busy one, so models without a fixed `threads` are limited per decode step.
 */
import { readFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import type { LlamaContext } from "node-llama-cpp";

/** CPU time counters at one moment, all in milliseconds. */
export interface CpuReading {
  /** CPU time all processes used (steal and interrupts included: time this machine's work could not run). */
  busyMs: number;
  /** CPU time this process used. */
  ownMs: number;
  /** Wall clock. */
  atMs: number;
}

export interface ThreadBudgetOptions {
  /** Cores this process may run on (default: `availableParallelism()`). */
  cores?: number;
  /** Reads the counters (default: /proc/stat on Linux, `os.cpus()` elsewhere, and `process.cpuUsage()`). */
  read?: () => CpuReading;
  /** The clock `read` stamps its readings with (default: `performance.now`). */
  clock?: () => number;
}

/**
 * The policy, in numbers (confirmed by `bun run bench -- --threads 1,2,default --background-load N`, which prints the
 * threads each decode step used):
 * - a core counts as taken when other programs keep it busy more than `takenCoreShare` of the time, so a light
 *   background (an idle desktop, a terminal) does not cost a thread, a busy one does;
 * - the counters are read at most every `sampleEveryMs`, from the decode loop itself (no timer runs while idle);
 * - fewer threads at once when others take cores; more only after `raiseAfterReadings` readings in a row agree, so a
 *   short burst of other work does not make the count flap.
 */
export const threadBudgetPolicy = {
  takenCoreShare: 0.25,
  sampleEveryMs: 250,
  raiseAfterReadings: 2,
} as const;

export class ThreadBudget {
  readonly cores: number;
  private readonly read: () => CpuReading;
  private readonly clock: () => number;
  private last: CpuReading;
  /** Threads a step may use now (before each context's own limit). */
  private allowed: number;
  private higherReadings = 0;
  /** Decode steps per thread count used, for the benchmark's report. */
  readonly steps = new Map<number, number>();
  /** Cores other programs used in the last reading. */
  othersCores = 0;

  constructor(options: ThreadBudgetOptions = {}) {
    this.cores = options.cores ?? availableParallelism();
    this.read = options.read ?? readCpu;
    this.clock = options.clock ?? (() => performance.now());
    this.last = this.read();
    this.allowed = this.cores;
  }

  /** The threads a step that wants `wanted` may use now; reads the counters when the last reading is old enough. */
  threadsFor(wanted: number): number {
    if (this.clock() - this.last.atMs >= threadBudgetPolicy.sampleEveryMs) this.update();
    const threads = Math.max(1, Math.min(wanted, this.allowed));
    this.steps.set(threads, (this.steps.get(threads) ?? 0) + 1);
    return threads;
  }

  /** Threads a step may use now, at most. */
  get current(): number {
    return this.allowed;
  }

  /**
   * Makes every decode step of `context` use at most `threadsFor(...)` threads. node-llama-cpp sets a context's
   * threads before each decode (`setThreads`, with the share its ThreadsSplitter gives the context); this wraps that
   * call on the context's native object. Pinned to node-llama-cpp 3.21.1 (tests/engine/threadBudget.test.ts checks
   * that a limited context decodes with fewer threads).
   */
  attach(context: LlamaContext): void {
    const native = (context as unknown as { _ctx?: { setThreads?: (threads: number) => unknown } })._ctx;
    const setThreads = native?.setThreads;
    if (!native || typeof setThreads !== "function") throw new Error("node-llama-cpp's context has no native setThreads to limit");
    Object.defineProperty(native, "setThreads", {
      configurable: true,
      writable: true,
      value: (threads: number) => setThreads.call(native, this.threadsFor(threads)),
    });
  }

  private update(): void {
    const reading = this.read();
    const wallMs = reading.atMs - this.last.atMs;
    if (wallMs <= 0) return;
    const others = Math.max(0, (reading.busyMs - this.last.busyMs - (reading.ownMs - this.last.ownMs)) / wallMs);
    this.last = reading;
    this.othersCores = others;
    // Others' time counts in whole cores, each past the share that leaves a core free (0.2 -> 0 cores, 0.6 -> 1).
    const taken = Math.max(0, Math.ceil(others - threadBudgetPolicy.takenCoreShare));
    const free = Math.max(1, this.cores - taken);
    if (free < this.allowed) {
      this.allowed = free;
      this.higherReadings = 0;
    } else if (free > this.allowed) {
      this.higherReadings++;
      if (this.higherReadings >= threadBudgetPolicy.raiseAfterReadings) {
        this.allowed = free;
        this.higherReadings = 0;
      }
    } else this.higherReadings = 0;
  }
}

/** USER_HZ: /proc/stat counts in 1/100 s on every Linux architecture llama.cpp runs on. */
const ticksPerMs = 100 / 1000;

/** The machine's and this process's CPU time now. */
export function readCpu(): CpuReading {
  const usage = process.cpuUsage();
  return { busyMs: machineBusyMs(), ownMs: (usage.user + usage.system) / 1000, atMs: performance.now() };
}

function machineBusyMs(): number {
  if (process.platform === "linux") {
    try {
      // "cpu  user nice system idle iowait irq softirq steal guest guest_nice" (guest time is inside user already).
      const line = readFileSync("/proc/stat", "latin1").slice(0, 256).split("\n", 1)[0]!;
      const f = line.trim().split(/\s+/).map(Number);
      return ((f[1] ?? 0) + (f[2] ?? 0) + (f[3] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0) + (f[8] ?? 0)) / ticksPerMs;
    } catch {
      // Fall through: /proc may be hidden.
    }
  }
  let busy = 0;
  for (const cpu of cpus()) busy += cpu.times.user + cpu.times.nice + cpu.times.sys + cpu.times.irq;
  return busy;
}
