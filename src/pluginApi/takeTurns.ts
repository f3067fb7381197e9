/** Several generations of one request run a few at a time, so one request with many prompts never fills the engine's queue. */
import { LlamaportError } from "../engine/EngineError.ts";
import type { Generation } from "../engine/types.ts";

/**
 * The generations, at most `size` of them running at once (a model's `parallel`); the others wait here for their
 * turn, not in the engine's queue, where they would crowd out other clients (whose requests get a 503 once it is
 * full). Each starts when its turn comes, by iteration or `collect()`; one whose turn comes after `signal` aborted
 * fails as a generation aborted before decoding does, without starting.
 * Fewer than `size + 1` generations are returned as they are.
 */
export function takeTurns(generations: Generation[], size: number, signal: AbortSignal): Generation[] {
  if (generations.length <= size) return generations;
  const turns = new Turns(size);
  return generations.map((generation) => turns.wrap(generation, signal));
}

class Turns {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  wrap(generation: Generation, signal: AbortSignal): Generation {
    const turns = this;
    return {
      model: generation.model,
      async *[Symbol.asyncIterator]() {
        await turns.take();
        try {
          if (signal.aborted) throw new LlamaportError("aborted", "request aborted before its turn");
          yield* generation;
        } finally {
          turns.give();
        }
      },
      async collect() {
        await turns.take();
        try {
          if (signal.aborted) throw new LlamaportError("aborted", "request aborted before its turn");
          return await generation.collect();
        } finally {
          turns.give();
        }
      },
    };
  }

  private take(): Promise<void> {
    if (this.running < this.size) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}
