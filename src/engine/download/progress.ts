/** Download progress as one sentence, and log lines for downloads nobody watches on a terminal: every few seconds or tenth, never per chunk. */
import { formatByteSize } from "../../config/byteSize.ts";
import type { DownloadProgress } from "../types.ts";

/** "1h 2m", "3m 20s", "12s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

/** "45% of 1.2 GiB, 12.5 MiB/s, 1m 30s left" (parts that are unknown are left out). */
export function describeProgress(progress: DownloadProgress): string {
  const { totalBytes, downloadedBytes, bytesPerSecond, secondsLeft } = progress;
  const parts = [
    totalBytes > 0
      ? `${Math.floor((100 * downloadedBytes) / totalBytes)}% of ${formatByteSize(totalBytes)}`
      : `${formatByteSize(downloadedBytes)} so far`,
  ];
  if (bytesPerSecond > 0) parts.push(`${formatByteSize(bytesPerSecond)}/s`);
  if (secondsLeft !== undefined && Number.isFinite(secondsLeft)) parts.push(`${formatDuration(secondsLeft)} left`);
  return parts.join(", ");
}

/**
 * A progress callback that logs `<what>: <progress>` at the first report, then whenever `everyMs` passed or another
 * tenth is done, and at 100%.
 */
export function progressLogger(what: string, log: (message: string) => void, everyMs = 5_000): (progress: DownloadProgress) => void {
  let lastAt = Number.NEGATIVE_INFINITY;
  let lastTenth = -1;
  return (progress) => {
    const tenth = progress.totalBytes > 0 ? Math.floor((10 * progress.downloadedBytes) / progress.totalBytes) : -1;
    const now = performance.now();
    if (now - lastAt < everyMs && tenth === lastTenth) return;
    if (tenth === 10 && lastTenth === 10) return;
    lastAt = now;
    lastTenth = tenth;
    log(`${what}: ${describeProgress(progress)}`);
  };
}
