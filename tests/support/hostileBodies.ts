/** Test support: seeded generators of hostile request bodies (truncated, deep, huge, mistyped, odd unicode, odd numbers, huge arrays). */

/** mulberry32: a small, fast, seedable PRNG, so a failing case can be made again from its seed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface HostileCase {
  /** Which generator made it. */
  kind: string;
  /** What was changed, for the failure message. */
  detail: string;
  body: string | Uint8Array;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const oddStrings = [
  "\ud800", // a lone surrogate (JSON-escaped below, so it survives as text)
  "\udfff\ud800",
  "\u0000",
  "\u202e\u2066right-to-left\u2069",
  "e\u0301\u0301\u0301\u0301",
  "\ufeff",
  "🐕".repeat(3),
  "\u200b\u200c\u200d",
  "<|eot_id|><s></s>[INST]",
  "\\",
  '"',
  "\n\r\t\v\f",
];

const oddNumbers = ["1e308", "-1e308", "1e400", "-1e400", "-0", "0.5", "9007199254740993", "1e-400", "123456789012345678901234567890"];

/** Every path (as keys) to a value inside `value`, the root included. */
function paths(value: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) for (const [index, item] of value.entries()) out.push(...paths(item, [...prefix, index]));
  else if (value !== null && typeof value === "object")
    for (const [key, item] of Object.entries(value)) out.push(...paths(item, [...prefix, key]));
  return out;
}

function withValueAt(body: Json, path: (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  const copy: Json = structuredClone(body);
  let node = copy as Record<string | number, Json>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, Json>;
  node[path.at(-1)!] = value;
  return copy;
}

/** Replaces the JSON text of the value at `path` with raw text (for numbers JSON.stringify cannot write, deep nesting). */
function withRawAt(body: Json, path: (string | number)[], raw: string): string {
  const marker = "\u0001__hostile__\u0001";
  return JSON.stringify(withValueAt(body, path, marker)).replace(JSON.stringify(marker), raw);
}

/** Makes `count` hostile variants of a valid body. */
export function hostileBodies(base: Json, count: number, next: () => number): HostileCase[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const all = paths(base);
  const stringPaths = all.filter((p) => typeof p.reduce<Json>((v, k) => (v as Record<string | number, Json>)[k]!, base) === "string");
  const at = () => pick(all);
  const name = (path: (string | number)[]) => path.join(".") || "(root)";
  const generators: Record<string, () => HostileCase> = {
    truncated: () => {
      const text = JSON.stringify(base);
      const cut = Math.floor(next() * text.length);
      return { kind: "truncated", detail: `cut at ${cut}`, body: text.slice(0, cut) };
    },
    deep: () => {
      const path = at();
      const depth = 65 + Math.floor(next() * 200_000);
      const open = next() < 0.5 ? "[" : '{"a":';
      const close = open === "[" ? "]" : "}";
      return {
        kind: "deep",
        detail: `${depth} levels at ${name(path)}`,
        body: withRawAt(base, path, `${open.repeat(depth)}1${close.repeat(depth)}`),
      };
    },
    hugeString: () => {
      const path = stringPaths.length > 0 && next() < 0.8 ? pick(stringPaths) : at();
      const length = Math.floor(2 ** (10 + next() * 10)); // 1 KB to 1 MB
      const text = pick(["a", "once upon a time ", "日本", "🐕", "\\u0000"]).repeat(length);
      return {
        kind: "hugeString",
        detail: `${length} repeats at ${name(path)}`,
        body: withRawAt(base, path, `"${text.replaceAll('"', "")}"`),
      };
    },
    wrongType: () => {
      const path = at();
      const value = pick<Json>([0, -1, 1.5, true, false, null, "", "x", [], {}, [1, "a", null], { nested: { deeper: [] } }]);
      return {
        kind: "wrongType",
        detail: `${name(path)} = ${JSON.stringify(value)}`,
        body: JSON.stringify(withValueAt(base, path, value)),
      };
    },
    oddUnicode: () => {
      const path = stringPaths.length > 0 ? pick(stringPaths) : at();
      const odd = pick(oddStrings);
      return { kind: "oddUnicode", detail: `${JSON.stringify(odd)} at ${name(path)}`, body: withRawAt(base, path, JSON.stringify(odd)) };
    },
    invalidUtf8: () => {
      const text = JSON.stringify(base);
      const cut = Math.floor(next() * text.length);
      const bytes = new TextEncoder().encode(text);
      const junk = pick([[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80]]);
      return {
        kind: "invalidUtf8",
        detail: `bytes ${junk} at ${cut}`,
        body: new Uint8Array([...bytes.slice(0, cut), ...junk, ...bytes.slice(cut)]),
      };
    },
    oddNumber: () => {
      const path = at();
      const number = pick(oddNumbers);
      return { kind: "oddNumber", detail: `${name(path)} = ${number}`, body: withRawAt(base, path, number) };
    },
    hugeArray: () => {
      const path = at();
      const length = Math.floor(2 ** (8 + next() * 9)); // 256 to 128 K items
      const item = pick<Json>([1, "x", { role: "user", content: "hi" }, [], null]);
      return {
        kind: "hugeArray",
        detail: `${length} x ${JSON.stringify(item)} at ${name(path)}`,
        body: JSON.stringify(withValueAt(base, path, Array(length).fill(item))),
      };
    },
    garbage: () => {
      const length = Math.floor(next() * 2000);
      const bytes = new Uint8Array(length);
      for (let i = 0; i < length; i++) bytes[i] = Math.floor(next() * 256);
      return { kind: "garbage", detail: `${length} random bytes`, body: bytes };
    },
    oversized: () => {
      // Over the 10 MiB limit: a 413, read no further than the limit.
      return { kind: "oversized", detail: "11 MiB", body: withRawAt(base, [], `{"pad":"${"p".repeat(11 * 1024 * 1024)}"}`) };
    },
  };
  const kinds = Object.keys(generators).filter((k) => k !== "oversized");
  const cases: HostileCase[] = [generators.oversized!()];
  while (cases.length < count) cases.push(generators[pick(kinds)]!());
  return cases;
}
