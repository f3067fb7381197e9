/** Hands a context's sequences to requests: a free one with the longest shared prompt prefix, else a place in a bounded FIFO queue. */
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";

/** A sequence lent to one request. Call `release()` exactly once, in a `finally`. */
export interface SequenceLease {
  readonly sequence: LlamaContextSequence;
  /** Its place among the pool's sequences (0 to `parallel` - 1). */
  readonly index: number;
  /** Milliseconds spent waiting in the queue. */
  readonly queueMs: number;
  release(): void;
}

interface Waiter {
  /** Waits for this sequence only. */
  only?: LlamaContextSequence;
  resolve(lease: SequenceLease): void;
  reject(error: unknown): void;
  enqueuedAt: number;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Invariant: no waiter could take a free sequence (a released one goes to the first waiter that takes it), so a
 * request finds a sequence free exactly when it need not queue.
 */
export class SequencePool {
  private readonly free: LlamaContextSequence[];
  private readonly waiters: Waiter[] = [];
  /** Sequences lent out now. */
  private readonly leased = new Set<LlamaContextSequence>();

  constructor(
    /** Every sequence, in id order. */
    readonly sequences: readonly LlamaContextSequence[],
    private readonly maxQueue: number,
  ) {
    this.free = sequences.slice();
  }

  /** Whether a sequence is free right now. */
  isFree(sequence: LlamaContextSequence): boolean {
    return this.free.includes(sequence);
  }

  /** Sequences leased out right now. */
  get inUse(): number {
    return this.leased.size;
  }

  /** Tokens the leased sequences hold in the KV cache now (what running requests occupy; idle ones keep a cache too). */
  get usedTokens(): number {
    let tokens = 0;
    for (const sequence of this.leased) tokens += sequence.nextTokenIndex;
    return tokens;
  }

  /** Requests waiting for a free sequence. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Lease a sequence. With `promptTokens`, the free sequence whose cached tokens share the longest prefix with the
   * prompt is chosen, so a follow-up chat turn only evaluates its new tokens.
   */
  acquire(promptTokens: readonly Token[] | undefined, signal?: AbortSignal, only?: number): Promise<SequenceLease> {
    if (signal?.aborted) return Promise.reject(new LlamaportError("aborted", "request aborted before it started"));
    const wanted = only === undefined ? undefined : this.sequences[only];
    if (only !== undefined && !wanted)
      return Promise.reject(
        new LlamaportError("invalid_request", `sequence must be between 0 and ${this.sequences.length - 1}, got ${only}`, {
          param: "sequence",
        }),
      );
    if (wanted ? this.free.includes(wanted) : this.free.length > 0)
      return Promise.resolve(this.lease(wanted ? this.take(wanted) : this.takeBest(promptTokens), 0));
    if (this.waiters.length >= this.maxQueue)
      return Promise.reject(
        new LlamaportError("busy", `server busy: ${this.waiters.length} requests are already waiting for this model`, {
          retryAfter: 1,
        }),
      );
    return new Promise<SequenceLease>((resolve, reject) => {
      const waiter: Waiter = { only: wanted, resolve, reject, enqueuedAt: performance.now(), signal };
      if (signal) {
        waiter.onAbort = () => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(new LlamaportError("aborted", "request aborted while waiting for a free sequence"));
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
    });
  }

  /** Rejects everyone waiting (the model is being unloaded). */
  rejectWaiters(error: unknown): void {
    for (const waiter of this.waiters.splice(0)) {
      if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
      waiter.reject(error);
    }
  }

  private takeBest(promptTokens: readonly Token[] | undefined): LlamaContextSequence {
    let bestIndex = 0;
    if (promptTokens && promptTokens.length > 0) {
      let bestShared = 0;
      for (let i = 0; i < this.free.length; i++) {
        const sequence = this.free[i]!;
        const shared = sequence.compareContextTokens(promptTokens as Token[]).firstDifferentIndex;
        // Only a request that continues most of what a sequence holds may take it over (llama-server's slot
        // similarity rule): a new conversation sharing just the template's first tokens must not evict a cached one.
        if (shared > bestShared && shared * 2 >= sequence.contextTokens.length) {
          bestShared = shared;
          bestIndex = i;
        }
      }
    }
    // Otherwise the least recently released sequence (the head of the list): the newer ones hold the conversations
    // most likely to continue.
    const [sequence] = this.free.splice(bestIndex, 1);
    return sequence!;
  }

  private take(sequence: LlamaContextSequence): LlamaContextSequence {
    this.free.splice(this.free.indexOf(sequence), 1);
    return sequence;
  }

  private lease(sequence: LlamaContextSequence, queueMs: number): SequenceLease {
    this.leased.add(sequence);
    let released = false;
    return {
      sequence,
      index: this.sequences.indexOf(sequence),
      queueMs,
      release: () => {
        if (released) return;
        released = true;
        this.leased.delete(sequence);
        this.handBack(sequence);
      },
    };
  }

  private handBack(sequence: LlamaContextSequence): void {
    const index = this.waiters.findIndex((w) => w.only === undefined || w.only === sequence);
    const waiter = index < 0 ? undefined : this.waiters.splice(index, 1)[0];
    if (waiter) {
      if (waiter.onAbort) waiter.signal?.removeEventListener("abort", waiter.onAbort);
      waiter.resolve(this.lease(sequence, performance.now() - waiter.enqueuedAt));
      return;
    }
    this.free.push(sequence);
  }
}
