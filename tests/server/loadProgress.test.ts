/** Model loading progress: a status line redrawn at most 10 times a second on a terminal, a log line every 2 s elsewhere. */
import { expect, test } from "bun:test";
import { LoadProgress } from "../../src/server/LoadProgress.ts";
import { LogWriter } from "../../src/server/LogWriter.ts";

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

test("on a terminal: one status line, throttled, cleared when the load ends; nothing logged", () => {
  const time = clock();
  const shown: (string | undefined)[] = [];
  const logged: string[] = [];
  const progress = new LoadProgress({ status: (text) => shown.push(text), log: (_l, m) => logged.push(m), now: time.now });
  progress.report("big", 0);
  for (let i = 1; i < 100; i++) {
    time.advance(10); // node-llama-cpp reports far more often than anyone can read
    progress.report("big", i / 100);
  }
  progress.report("big", 1);
  expect(shown[0]).toBe("loading model big 0% (0.0 s)");
  expect(shown.length).toBeLessThanOrEqual(12);
  expect(shown).toContain("loading model big 50% (0.5 s)");
  expect(shown.at(-1)).toBeUndefined();
  expect(logged).toEqual([]);
});

test("elsewhere: a log line every 2 s while a load runs; a quick load logs nothing", () => {
  const time = clock();
  const logged: string[] = [];
  const progress = new LoadProgress({ log: (_l, m) => logged.push(m), now: time.now });
  progress.report("quick", 0);
  progress.report("quick", 0.5);
  progress.report("quick", 1);
  expect(logged).toEqual([]);
  progress.report("slow", 0);
  for (let i = 1; i <= 50; i++) {
    time.advance(100);
    progress.report("slow", i / 100);
  }
  progress.report("slow", 1);
  expect(logged).toEqual(["loading model slow: 20% after 2.0 s", "loading model slow: 40% after 4.0 s"]);
});

test("the log writer: JSON lines carry the fields; on a terminal, lines are written above the status line", () => {
  const out: string[] = [];
  const json = new LogWriter({ format: "json", write: (t) => out.push(t), terminal: false });
  json.log("info", "POST /x 200", { request_id: "r1", status: 200 });
  const line = JSON.parse(out[0]!);
  expect(line).toEqual({ time: expect.any(String), level: "info", msg: "POST /x 200", request_id: "r1", status: 200 });
  expect(out[0]!.endsWith("\n")).toBe(true);

  const tty: string[] = [];
  const text = new LogWriter({ format: "text", write: (t) => tty.push(t), terminal: true });
  text.status("loading model big 10%");
  text.log("info", "hello");
  const written = tty.at(-1)!;
  expect(written.startsWith("\r\u001b[2K")).toBe(true);
  expect(written.indexOf("hello\n")).toBeLessThan(written.indexOf("loading model big 10%"));
  text.status(undefined);
  expect(tty.at(-1)).toBe("\r\x1b[2K");
  const plain: string[] = [];
  new LogWriter({ format: "text", write: (t) => plain.push(t), terminal: false }).log("warn", "careful");
  expect(plain[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z warn {2}careful\n$/);
});
