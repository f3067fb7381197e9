/**
 * Counts node-llama-cpp's native decode calls and the batch items they carry, for every context created in this process
 * from now on (the in-process llamaport's included), as tests/engine/batching.test.ts counts them for one context.
 */
import type { Llama } from "node-llama-cpp";

export interface DecodeCounts {
  decodes: number;
  items: number;
}

export class DecodeCounter {
  private counts: DecodeCounts = { decodes: 0, items: 0 };

  /** Wraps the native context class of `llama`, so contexts created later report their decodes here. */
  install(llama: Llama): void {
    const bindings = (llama as unknown as { _bindings: { AddonContext: new (...args: unknown[]) => object } })._bindings;
    const counts = () => this.counts;
    bindings.AddonContext = new Proxy(bindings.AddonContext, {
      construct(target, args) {
        return new Proxy(Reflect.construct(target, args), {
          get(native, key) {
            const value = Reflect.get(native, key);
            if (typeof value !== "function") return value;
            if (key === "decodeBatch")
              return (...callArgs: unknown[]) => {
                counts().decodes++;
                return value.apply(native, callArgs);
              };
            if (key === "addToBatch")
              return (...callArgs: unknown[]) => {
                counts().items++;
                return value.apply(native, callArgs);
              };
            return value.bind(native);
          },
        });
      },
    });
  }

  /** The counts so far; `since` gives the difference to an earlier snapshot. */
  snapshot(): DecodeCounts {
    return { ...this.counts };
  }

  static since(before: DecodeCounts, after: DecodeCounts): DecodeCounts {
    return { decodes: after.decodes - before.decodes, items: after.items - before.items };
  }
}
