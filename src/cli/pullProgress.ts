/**
 * How `pull` shows its progress: on a terminal one line redrawn in place (a bar, size, speed, time left); elsewhere
 * (a log, a pipe) plain lines every few seconds or tenth. Drawn by hand: one line of text is not worth a dependency.
 */
import { describeProgress, formatDuration, progressLogger } from "../engine/download/progress.ts";
import type { DownloadProgress, PullProgress } from "../engine/types.ts";
import { formatBytes } from "./format.ts";

export interface ProgressDisplay {
  update(event: PullProgress): void;
  /** Ends the display (a terminal's line is finished). */
  end(): void;
}

export function pullProgress(out: NodeJS.WriteStream): ProgressDisplay {
  return out.isTTY ? terminalProgress(out) : lineProgress(out);
}

function lineProgress(out: NodeJS.WriteStream): ProgressDisplay {
  let logDownload: ((progress: DownloadProgress) => void) | undefined;
  let lastStage = "";
  return {
    update(event) {
      if (event.stage === "downloading") {
        logDownload ??= progressLogger(`downloading ${event.file}`, (line) => out.write(`${line}\n`));
        logDownload(event.progress);
      } else if (event.stage !== lastStage) out.write(`${describeStage(event)}\n`);
      lastStage = event.stage;
    },
    end() {},
  };
}

function terminalProgress(out: NodeJS.WriteStream): ProgressDisplay {
  let lastDraw = 0;
  let drawn = false;
  let drewComplete = false;
  const draw = (text: string) => {
    const width = Math.max(20, (out.columns || 80) - 1);
    out.write(`\r${text.length > width ? text.slice(0, width) : text}\x1b[K`);
    drawn = true;
  };
  return {
    update(event) {
      if (event.stage !== "downloading") {
        if (drawn) out.write("\n");
        drawn = false;
        out.write(`${describeStage(event)}\n`);
        return;
      }
      const now = performance.now();
      const { progress } = event;
      const complete = progress.totalBytes > 0 && progress.downloadedBytes >= progress.totalBytes;
      // At most ten times a second; the last state once.
      if (complete ? drewComplete : now - lastDraw < 100) return;
      drewComplete = complete;
      lastDraw = now;
      draw(`${event.file} ${progressLine(progress, out.columns || 80)}`);
    },
    end() {
      if (drawn) out.write("\n");
      drawn = false;
    },
  };
}

/** "  45% [█████████░░░░░░░░░░░]  9.0 MiB / 20 MiB  12.5 MiB/s  1s left" */
export function progressLine(progress: DownloadProgress, columns: number): string {
  const { totalBytes, downloadedBytes, bytesPerSecond, secondsLeft } = progress;
  if (totalBytes <= 0) return `${formatBytes(downloadedBytes)}  ${formatBytes(bytesPerSecond)}/s`;
  const fraction = Math.min(1, downloadedBytes / totalBytes);
  const barWidth = Math.max(10, Math.min(30, columns - 70));
  const filled = Math.round(fraction * barWidth);
  const parts = [
    `${String(Math.floor(fraction * 100)).padStart(3)}%`,
    `[${"█".repeat(filled)}${"░".repeat(barWidth - filled)}]`,
    `${formatBytes(downloadedBytes)} / ${formatBytes(totalBytes)}`,
    bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s` : "",
    secondsLeft !== undefined ? `${formatDuration(secondsLeft)} left` : "",
  ];
  return parts.filter(Boolean).join("  ");
}

function describeStage(event: PullProgress): string {
  switch (event.stage) {
    case "resolving":
      return `resolving ${event.source}`;
    case "downloading":
      return `downloading ${event.file}: ${describeProgress(event.progress)}`;
    case "verifying":
      return `verifying ${event.file}${event.sha256 ? ` (GGUF structure, SHA-256 ${event.sha256.slice(0, 12)}…)` : " (GGUF structure)"}`;
    case "registering":
      return `adding ${event.model} to the registry`;
  }
}
