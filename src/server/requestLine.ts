/** The one log line of a finished request: readable text for people, the same facts as fields for JSON logs. */
import type { RequestRecord } from "./RequestRecord.ts";

export interface RequestLine {
  level: "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

/** Polls that would flood the log (load balancers, Prometheus): logged only when they fail. */
const quietPaths = new Set(["/health", "/metrics"]);

/** The line for a finished request, or undefined for a successful poll of `/health` or `/metrics`. */
export function requestLine(record: RequestRecord, durationMs: number): RequestLine | undefined {
  if (record.status < 400 && quietPaths.has(record.path) && !record.error) return undefined;
  const tokensPerSecond = record.tokensPerSecond;
  const fields: Record<string, unknown> = {
    request_id: record.id,
    method: record.method,
    path: record.path,
    route: record.route,
    status: record.status,
    duration_ms: round(durationMs),
    model: record.model,
    prompt_tokens: record.model === undefined ? undefined : record.promptTokens,
    completion_tokens: record.model === undefined ? undefined : record.completionTokens,
    ttft_ms: record.firstTokenMs === undefined ? undefined : round(record.firstTokenMs),
    tokens_per_second: tokensPerSecond === undefined ? undefined : round(tokensPerSecond),
    error: record.error,
    client_disconnected: record.disconnected || undefined,
  };
  let message = `${record.method} ${record.path} ${record.status} ${formatMs(durationMs)}`;
  if (record.model !== undefined) message += ` ${record.model} ${record.promptTokens}+${record.completionTokens} tokens`;
  if (record.firstTokenMs !== undefined) message += ` ttft ${formatMs(record.firstTokenMs)}`;
  if (tokensPerSecond !== undefined) message += ` ${tokensPerSecond.toFixed(tokensPerSecond < 10 ? 1 : 0)} tok/s`;
  if (record.disconnected) message += " client disconnected";
  if (record.error) message += `: ${record.error}`;
  message += ` [${record.id}]`;
  // A 500 is a bug (its stack is logged too); refusals, busy and shutting-down answers are the server working.
  const level = record.status === 500 ? "error" : "info";
  return { level, message, fields: Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
