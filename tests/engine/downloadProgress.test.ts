/** How download progress reads: one sentence, and log lines every few seconds or tenth however often progress is reported. */
import { expect, test } from "bun:test";
import { describeProgress, formatDuration, progressLogger } from "../../src/engine/download/progress.ts";

const MiB = 1024 ** 2;

test("progress as one sentence; unknown parts are left out", () => {
  expect(describeProgress({ totalBytes: 200 * MiB, downloadedBytes: 90 * MiB, bytesPerSecond: 12.5 * MiB, secondsLeft: 88.4 })).toBe(
    "45% of 200 MiB, 12.5 MiB/s, 1m 28s left",
  );
  expect(describeProgress({ totalBytes: 0, downloadedBytes: 3 * MiB, bytesPerSecond: 0 })).toBe("3 MiB so far");
  expect([formatDuration(5), formatDuration(3725), formatDuration(-1)]).toEqual(["5s", "1h 2m", "0s"]);
});

test("a download reported a thousand times in a second logs once per tenth", () => {
  const lines: string[] = [];
  const log = progressLogger("downloading x", (line) => lines.push(line));
  for (let i = 0; i <= 1000; i++) log({ totalBytes: 1000 * MiB, downloadedBytes: i * MiB, bytesPerSecond: 0 });
  expect(lines).toEqual(Array.from({ length: 11 }, (_, tenth) => `downloading x: ${tenth * 10}% of 1000 MiB`));
});
