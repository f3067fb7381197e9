/** Turns LlamaChat's function-call callbacks into the engine's tool-call events: ids, a start per call, argument pieces, an end. */
import type { LlamaChatResponseFunctionCallParamsChunk } from "node-llama-cpp";
import { randomUUID } from "node:crypto";
import type { ToolCallSink } from "../StreamingGeneration.ts";
import type { ToolCall, UnfinishedToolCall } from "../toolTypes.ts";

export class ToolCallStream {
  /** Calls completed so far, in order. */
  readonly calls: ToolCall[] = [];
  private started = -1;
  private id = "";
  private name = "";
  /** The params grammar ends every call with "\n\n\n\n": trailing whitespace is held back until more JSON follows. */
  private heldWhitespace = "";
  private json = "";

  constructor(private readonly sink: ToolCallSink) {}

  /** A piece of the arguments of call `callIndex` (LlamaChat's `onFunctionCallParamsChunk`). */
  params(chunk: LlamaChatResponseFunctionCallParamsChunk): void {
    this.start(chunk.callIndex, chunk.functionName);
    const text = this.heldWhitespace + chunk.paramsChunk;
    const json = text.trimEnd();
    this.heldWhitespace = chunk.done ? "" : text.slice(json.length);
    if (json.length === 0) return;
    this.json += json;
    this.sink.toolCallArguments(chunk.callIndex, json);
  }

  /** A call is complete (LlamaChat's `onFunctionCall`); a function without parameters streamed no pieces. */
  end(functionName: string, params: unknown): void {
    const index = this.calls.length;
    this.start(index, functionName);
    const args = (params ?? {}) as Record<string, unknown>;
    if (this.json === "") {
      this.json = JSON.stringify(args);
      this.sink.toolCallArguments(index, this.json);
    }
    const call: ToolCall = { id: this.id, name: functionName, arguments: args };
    this.calls.push(call);
    this.sink.toolCallEnd(index, call, this.json);
  }

  /** The call that began and never ended (generation stopped inside it), if one did. */
  get unfinished(): UnfinishedToolCall | undefined {
    if (this.started < this.calls.length) return undefined;
    return { index: this.started, id: this.id, name: this.name, argumentsJson: this.json };
  }

  private start(index: number, name: string): void {
    if (index === this.started) return;
    this.started = index;
    this.id = `call_${randomUUID().replaceAll("-", "").slice(0, 24)}`;
    this.name = name;
    this.heldWhitespace = "";
    this.json = "";
    this.sink.toolCallStart(index, this.id, name);
  }
}
