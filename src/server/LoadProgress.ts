/**
 * Shows models loading: on a terminal one status line redrawn in place (at most 10 times a second); elsewhere a log
 * line every few seconds while a load takes long. node-llama-cpp reports progress far more often than that.
 */
import type { Log } from "../plugins/PluginHost.ts";

export interface LoadProgressOptions {
  /** A status line redrawn in place (a terminal); undefined clears it. Without it, progress goes to the log. */
  status?: (text: string | undefined) => void;
  log: Log;
  now?: () => number;
  /** How often the log gets a line for a load still running (default 2 s); the first comes after that long. */
  logEveryMs?: number;
}

interface Loading {
  startedAt: number;
  fraction: number;
  lastShownAt: number;
}

export class LoadProgress {
  private readonly loading = new Map<string, Loading>();
  private readonly now: () => number;

  constructor(private readonly options: LoadProgressOptions) {
    this.now = options.now ?? (() => performance.now());
  }

  /** node-llama-cpp's progress for one model's weights: 0 to 1 (1 also when the load failed). */
  readonly report = (model: string, fraction: number): void => {
    const now = this.now();
    let state = this.loading.get(model);
    if (!state) {
      if (fraction >= 1) return; // loaded before anything was shown
      state = { startedAt: now, fraction, lastShownAt: now };
      this.loading.set(model, state);
      this.options.status?.(this.statusText());
      return;
    }
    state.fraction = fraction;
    if (fraction >= 1) {
      this.loading.delete(model);
      this.options.status?.(this.loading.size > 0 ? this.statusText() : undefined);
      return;
    }
    if (this.options.status) {
      if (now - state.lastShownAt < 100) return;
      state.lastShownAt = now;
      this.options.status(this.statusText());
    } else if (now - state.lastShownAt >= (this.options.logEveryMs ?? 2_000)) {
      state.lastShownAt = now;
      this.options.log("info", `loading model ${model}: ${percent(fraction)} after ${((now - state.startedAt) / 1000).toFixed(1)} s`, {
        model,
        progress: Math.round(fraction * 1000) / 1000,
      });
    }
  };

  private statusText(): string {
    const now = this.now();
    const parts = [...this.loading].map(
      ([model, state]) => `${model} ${percent(state.fraction)} (${((now - state.startedAt) / 1000).toFixed(1)} s)`,
    );
    return `loading model ${parts.join(", ")}`;
  }
}

function percent(fraction: number): string {
  return `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`;
}
