/** Writes log lines to stderr: readable text (coloured on a terminal) or one JSON object per line (`--log-format json`). */
import type { Log, LogLevel } from "../plugins/PluginHost.ts";

export type LogFormat = "text" | "json";
export const logFormats: readonly LogFormat[] = ["text", "json"];

export interface LogWriterOptions {
  format: LogFormat;
  /** Where lines go (default: stderr). */
  write?: (text: string) => void;
  /** The output is a terminal: colours, and a status line redrawn in place (default: whether stderr is a TTY). */
  terminal?: boolean;
}

const colours: Record<LogLevel, string> = { info: "\x1b[32m", warn: "\x1b[33m", error: "\x1b[31m" };
const dim = "\x1b[2m";
const reset = "\x1b[0m";
const clearLine = "\r\x1b[2K";

export class LogWriter {
  readonly terminal: boolean;
  private readonly write: (text: string) => void;
  /** The status line shown under the log on a terminal (a model loading), redrawn after each line. */
  private statusText?: string;

  constructor(private readonly options: LogWriterOptions) {
    this.write = options.write ?? ((text) => process.stderr.write(text));
    this.terminal = options.terminal ?? (process.stderr.isTTY === true && options.format === "text");
  }

  /** The `Log` function: one line per call; `fields` go into the JSON object (text lines carry them in the message). */
  readonly log: Log = (level, message, fields) => {
    const time = new Date().toISOString();
    let line: string;
    if (this.options.format === "json") line = `${JSON.stringify({ time, level, msg: message, ...fields })}\n`;
    else if (this.terminal) line = `${dim}${time.slice(11, 23)}${reset} ${colours[level]}${level.padEnd(5)}${reset} ${message}\n`;
    else line = `${time} ${level.padEnd(5)} ${message}\n`;
    if (this.statusText === undefined) this.write(line);
    else this.write(`${clearLine}${line}${this.statusText}`);
  };

  /** Shows `text` as a line redrawn in place on a terminal, below the log; undefined removes it. Only on a terminal. */
  readonly status = (text: string | undefined): void => {
    if (!this.terminal) return;
    if (text === undefined) {
      if (this.statusText !== undefined) this.write(clearLine);
    } else this.write(`${clearLine}${dim}${text}${reset}`);
    this.statusText = text === undefined ? undefined : `${dim}${text}${reset}`;
  };
}

let processLog: Log | undefined;

/** The CLI's log, once it has read its flags; code that runs outside a server (unpacking the runtime) logs through it. */
export function setProcessLog(log: Log): void {
  processLog = log;
}

/** Logs through the CLI's log (text on stderr until one is set). */
export const logToProcess: Log = (level, message, fields) => {
  processLog ??= new LogWriter({ format: "text" }).log;
  processLog(level, message, fields);
};
