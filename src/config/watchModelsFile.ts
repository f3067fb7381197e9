/** Watches models.yaml and hands each valid edit to a callback; an invalid edit is reported and the previous registry stays. */
import { watch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { loadModelsFile, type ModelRegistryConfig } from "./loadModelsFile.ts";

export interface ModelsFileWatchOptions {
  onChange(config: ModelRegistryConfig): void;
  onError(error: Error): void;
  debounceMs?: number;
}

/** Watches the folder, not the file: editors often save by writing a new file and renaming it over the old one. */
export function watchModelsFile(file: string, options: ModelsFileWatchOptions): { close(): void; settled(): Promise<void> } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let queue: Promise<void> = Promise.resolve();
  let lastText: string | undefined;
  const name = basename(file);
  const watcher: FSWatcher = watch(dirname(file), (_event, changed) => {
    if (changed?.toString() !== name) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      queue = queue.then(async () => {
        let text: string;
        try {
          text = await Bun.file(file).text();
        } catch {
          return; // Deleted or mid-rename: the next event brings the new file.
        }
        if (text === lastText) return;
        lastText = text;
        try {
          options.onChange(await loadModelsFile(file));
        } catch (error) {
          options.onError(error as Error);
        }
      });
    }, options.debounceMs ?? 50);
  });
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
    settled: () => queue,
  };
}
