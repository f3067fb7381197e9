/** SequencePool with stand-in sequences: prefix-aware choice, FIFO queue, queue limit, and aborts that give up a place. */
import { describe, expect, test } from "bun:test";
import type { LlamaContextSequence, Token } from "node-llama-cpp";
import { LlamaportError } from "../../src/engine/EngineError.ts";
import { type SequenceLease, SequencePool } from "../../src/engine/SequencePool.ts";

/** A sequence that holds `tokens`; only what the pool reads of it. */
function fakeSequence(id: number, tokens: number[] = []) {
  return {
    id,
    contextTokens: tokens,
    compareContextTokens(other: number[]) {
      let i = 0;
      while (i < tokens.length && i < other.length && tokens[i] === other[i]) i++;
      return { firstDifferentIndex: i };
    },
  } as unknown as LlamaContextSequence & { id: number };
}

const tokens = (...ids: number[]) => ids as unknown as Token[];
const idOf = (lease: { sequence: LlamaContextSequence }) => (lease.sequence as unknown as { id: number }).id;

describe("SequencePool", () => {
  test("a free sequence holding the longest shared prefix is chosen, if the request continues most of it", async () => {
    const pool = new SequencePool([fakeSequence(0, [1, 2, 9]), fakeSequence(1, [1, 2, 3, 4]), fakeSequence(2, [7, 7, 7, 7, 7, 7])], 4);
    const lease = await pool.acquire(tokens(1, 2, 3, 4, 5));
    expect(idOf(lease)).toBe(1);
    // [7] shares 1 of the 6 tokens sequence 2 holds: too little to take over that cached conversation.
    const other = await pool.acquire(tokens(7, 8));
    expect(idOf(other)).toBe(0);
  });

  test("with every sequence leased, requests wait in FIFO order and get sequences as leases are released", async () => {
    const pool = new SequencePool([fakeSequence(0)], 4);
    const first = await pool.acquire(undefined);
    const order: string[] = [];
    const queued = (name: string) =>
      pool.acquire(undefined).then((lease) => {
        order.push(name);
        return lease;
      });
    const second = queued("second");
    const third = queued("third");
    expect([pool.inUse, pool.waiting]).toEqual([1, 2]);
    first.release();
    (await second).release();
    (await third).release();
    expect(order).toEqual(["second", "third"]);
    expect([pool.inUse, pool.waiting]).toEqual([0, 0]);
  });

  test("past max_queue waiting requests, the next one is refused as busy with a retry hint", async () => {
    const pool = new SequencePool([fakeSequence(0)], 1);
    await pool.acquire(undefined);
    void pool.acquire(undefined);
    const refused = await pool.acquire(undefined).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(LlamaportError);
    expect(refused).toMatchObject({ code: "busy", status: 503, retryAfter: 1 });
  });

  test("a waiting request that is aborted leaves the queue at once and the released sequence goes to the next", async () => {
    const pool = new SequencePool([fakeSequence(0)], 4);
    const running = await pool.acquire(undefined);
    const controller = new AbortController();
    const aborted = pool.acquire(undefined, controller.signal).catch((e: unknown) => e);
    const next = pool.acquire(undefined);
    expect(pool.waiting).toBe(2);
    controller.abort();
    expect(await aborted).toMatchObject({ code: "aborted" });
    expect(pool.waiting).toBe(1);
    running.release();
    expect(idOf(await next)).toBe(0);
    expect(pool.inUse).toBe(1);
  });

  test("an already aborted request never takes a sequence; release is idempotent", async () => {
    const pool = new SequencePool([fakeSequence(0)], 4);
    expect(await pool.acquire(undefined, AbortSignal.abort()).catch((e: unknown) => e)).toMatchObject({ code: "aborted" });
    const lease = await pool.acquire(undefined);
    lease.release();
    lease.release();
    expect(pool.inUse).toBe(0);
    expect(idOf(await pool.acquire(undefined))).toBe(0);
  });

  test("a request for one sequence takes it when free and otherwise waits for it, letting others pass to the rest", async () => {
    const pool = new SequencePool([fakeSequence(0, [1, 2, 3]), fakeSequence(1)], 4);
    // Asked for by index, even though sequence 0 holds this prompt's prefix.
    const one = await pool.acquire(tokens(1, 2, 3, 4), undefined, 1);
    expect([idOf(one), one.index]).toEqual([1, 1]);
    const zero = await pool.acquire(undefined, undefined, 0);
    const order: string[] = [];
    const noted = (name: string) => (lease: SequenceLease) => {
      order.push(name);
      return lease;
    };
    const wantsZero = pool.acquire(undefined, undefined, 0).then(noted("zero"));
    const anyOne = pool.acquire(undefined).then(noted("any"));
    expect(pool.waiting).toBe(2);
    // Sequence 1 comes back: the first waiter that takes it is the one behind, which asked for any.
    one.release();
    expect(idOf(await anyOne)).toBe(1);
    expect(pool.waiting).toBe(1);
    zero.release();
    expect(idOf(await wantsZero)).toBe(0);
    expect(order).toEqual(["any", "zero"]);
    expect(await pool.acquire(undefined, undefined, 2).catch((e: unknown) => e)).toMatchObject({
      code: "invalid_request",
      param: "sequence",
    });
  });

  test("unloading rejects everyone waiting", async () => {
    const pool = new SequencePool([fakeSequence(0)], 4);
    await pool.acquire(undefined);
    const waiting = pool.acquire(undefined).catch((e: unknown) => e);
    pool.rejectWaiters(new LlamaportError("unavailable", "unloaded"));
    expect(await waiting).toMatchObject({ code: "unavailable" });
    expect(pool.waiting).toBe(0);
  });
});
