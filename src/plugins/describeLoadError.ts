/** Finds the file, line and column of a plugin load error, from Bun's build messages or the stack trace. */

export interface LoadErrorInfo {
  message: string;
  file?: string;
  line?: number;
  column?: number;
}

interface Positioned {
  message?: string;
  position?: { file?: string; line?: number; column?: number } | null;
}

export function describeLoadError(error: unknown, file: string): LoadErrorInfo {
  // Bun reports transpile errors as BuildMessage / ResolveMessage objects (sometimes inside an AggregateError).
  const candidates: Positioned[] = [];
  if (error instanceof AggregateError) candidates.push(...(error.errors as Positioned[]));
  candidates.push(error as Positioned);
  for (const candidate of candidates) {
    const position = candidate?.position;
    if (position?.line)
      return {
        message: String(candidate.message ?? error),
        file: position.file || file,
        line: position.line,
        column: position.column === undefined ? undefined : position.column + 1,
      };
  }
  const message = error instanceof Error ? error.message : String((error as Positioned)?.message ?? error);
  const stack = error instanceof Error ? (error.stack ?? "") : "";
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const match = new RegExp(`${escaped}(?:\\?v=\\d+)?:(\\d+):(\\d+)`).exec(stack);
  if (match) return { message, file, line: Number(match[1]), column: Number(match[2]) };
  return { message, file };
}
