// Ollama-style keep_alive durations ("5m", "1h30m", 300, "-1") to milliseconds; -1 means "never".

/** Milliseconds meaning "stay forever", what any negative duration becomes, as in Ollama. */
export const NEVER = -1;

const unitMs: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3, // U+00B5 micro sign, which Go also accepts
  μs: 1e-3, // U+03BC Greek mu, which Go also accepts
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

// Unambiguous (`\d+\.?\d*` could split a run of digits in many ways and backtrack for seconds on a long one).
const NUMBER = String.raw`(?:\d+(?:\.\d*)?|\.\d+)`;
const UNIT = "(?:ns|us|µs|μs|ms|s|m|h)";

/**
 * What `parseDuration` accepts as a string, as an ECMAScript regex source, so the JSON schema can tell editors too:
 * a Go duration ("1h30m", "250ms", "-1m") or a plain number of seconds ("300", "0", "-1").
 */
export const DURATION_PATTERN = `^[-+]?(?:(?:${NUMBER}${UNIT})+|${NUMBER})$`;

const durationRegex = new RegExp(DURATION_PATTERN);
const partRegex = new RegExp(`(${NUMBER})(${UNIT})`, "g");

/**
 * Milliseconds for a keep_alive value: a number is seconds; a string is a Go duration or a number of seconds
 * (Ollama reads OLLAMA_KEEP_ALIVE that way). Negative values become -1 ("never unload").
 */
export function parseDuration(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`invalid duration ${value}: expected a finite number of seconds`);
    return value < 0 ? NEVER : Math.round(value * 1000);
  }
  if (typeof value !== "string")
    throw new Error(`invalid duration ${JSON.stringify(value)}: expected a string like "5m" or a number of seconds`);
  const text = value.trim();
  if (text.length > 64) throw new Error(`invalid duration "${text.slice(0, 20)}…" (${text.length} characters): too long`);
  if (!durationRegex.test(text))
    throw new Error(
      `invalid duration ${JSON.stringify(value)}: expected a number of seconds or a duration like "5m", "1h30m", "30s", "250ms" (units: h, m, s, ms, us, ns)`,
    );
  const negative = text.startsWith("-");
  const body = text.replace(/^[-+]/, "");
  let ms: number;
  if (/^[\d.]+$/.test(body)) {
    ms = Number(body) * 1000;
  } else {
    ms = 0;
    for (const [, amount, unit] of body.matchAll(partRegex)) ms += Number(amount) * unitMs[unit!]!;
  }
  if (!Number.isFinite(ms)) throw new Error(`invalid duration ${JSON.stringify(value)}: too large`);
  // "-0s" is zero, not "never": Go parses it as 0 too.
  if (negative && ms > 0) return NEVER;
  return Math.round(ms);
}
