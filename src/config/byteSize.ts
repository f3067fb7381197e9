// Human byte sizes ("8GiB", "512MB", "1.5G", 1073741824) to and from a number of bytes, for memory_budget.

// KB/MB/GB are decimal and KiB/MiB/GiB binary, as the SI/IEC names say; a bare K/M/G/T is binary, as in
// `java -Xmx8g` or `docker -m 8g`, because that is what people mean when sizing RAM that way.
const unitBytes: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1e3,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** What `parseByteSize` accepts as a string, as an ECMAScript regex source, so the JSON schema can tell editors too. */
export const BYTE_SIZE_PATTERN = String.raw`^(?:\d+\.?\d*|\.\d+) ?(?:[bB]|[kKmMgGtT](?:[iI]?[bB])?)?$`;

const byteSizeRegex = new RegExp(BYTE_SIZE_PATTERN);

/** Bytes in a size: a number is bytes; a string is a number with an optional unit (B, K/KB/KiB, M, G, T; any case). */
export function parseByteSize(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw new Error(`invalid size ${value}: expected a number of bytes >= 0`);
    return Math.floor(value);
  }
  if (typeof value !== "string") throw new Error(`invalid size ${JSON.stringify(value)}: expected a string like "8GiB"`);
  const text = value.trim();
  if (!byteSizeRegex.test(text))
    throw new Error(`invalid size ${JSON.stringify(value)}: expected a number of bytes or a size like "8GiB", "512MB", "1.5G"`);
  const [, amount, unit] = /^([\d.]+) ?([a-zA-Z]*)$/.exec(text)!;
  const bytes = Number(amount) * unitBytes[unit!.toLowerCase()]!;
  if (!Number.isFinite(bytes)) throw new Error(`invalid size ${JSON.stringify(value)}: too large`);
  return Math.floor(bytes);
}

/** A short binary-unit rendering for logs and messages: 1536 -> "1.5 KiB", 8589934592 -> "8 GiB". */
export function formatByteSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let amount = bytes;
  let index = 0;
  while (Math.abs(amount) >= 1024 && index < units.length - 1) {
    amount /= 1024;
    index++;
  }
  const rounded = index === 0 ? String(amount) : String(Math.round(amount * 10) / 10);
  return `${rounded} ${units[index]}`;
}
