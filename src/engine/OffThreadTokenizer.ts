/**
 * Tokenizes prompts without freezing the server: short texts on the main thread, long ones on a worker thread that
 * holds vocabulary-only copies of the models (node-llama-cpp's tokenizer is a synchronous native call, about 0.4 µs
 * per character here, superlinear on long texts: 2 MB took 3.5 s).
 */
import type { LlamaText, Token } from "node-llama-cpp";
import type { LoadedModel } from "./LoadedModel.ts";
import type { TokenizerReply, TokenizerRequest } from "./tokenizerWorker.ts";

/** Up to this many characters a text is tokenized in place: ~13 ms at most, less than a worker round trip costs. */
export const inlineTokenizeChars = 32_768;

export class OffThreadTokenizer {
  private worker?: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(tokens: Token[]): void; reject(error: Error): void }>();

  constructor(
    /** Where the worker imports node-llama-cpp from (the same copy as the main thread). */
    private readonly specifier: () => Promise<string>,
  ) {}

  /** Tokens of plain text (`special`: parse special tokens written in it, as raw prompts do). */
  async text(loaded: LoadedModel, text: string, special: boolean): Promise<Token[]> {
    if (text.length <= inlineTokenizeChars) return loaded.model.tokenize(text, special);
    return this.send({ type: "tokenize", id: this.nextId++, modelPath: loaded.modelPath, text, special });
  }

  /** Tokens of a rendered chat prompt; `chars` is its length, which decides where it is tokenized. */
  async llamaText(loaded: LoadedModel, text: LlamaText, chars: number): Promise<Token[]> {
    if (chars <= inlineTokenizeChars) return text.tokenize(loaded.model.tokenizer);
    return this.send({ type: "tokenizeLlamaText", id: this.nextId++, modelPath: loaded.modelPath, llamaText: text.toJSON() });
  }

  /** The model is unloaded: the worker lets its vocabulary go too. */
  release(modelPath: string): void {
    this.worker?.postMessage({ type: "release", modelPath } satisfies TokenizerRequest);
  }

  dispose(): void {
    this.worker?.terminate();
    this.worker = undefined;
    for (const { reject } of this.pending.values()) reject(new Error("the tokenizer was stopped"));
    this.pending.clear();
  }

  private async send(request: TokenizerRequest & { id: number }): Promise<Token[]> {
    const worker = await this.start();
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject });
      worker.postMessage(request);
    });
  }

  private async start(): Promise<Worker> {
    if (this.worker) return this.worker;
    const specifier = await this.specifier();
    if (this.worker) return this.worker;
    const worker = new Worker(workerLocation());
    // An idle tokenizer must not keep the process alive.
    worker.unref();
    worker.onmessage = (event: MessageEvent<TokenizerReply>) => {
      const reply = event.data;
      const waiter = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      if ("error" in reply) waiter?.reject(new Error(`tokenizing failed: ${reply.error}`));
      else waiter?.resolve(toArray(reply.tokens));
    };
    worker.onerror = (event) => {
      for (const { reject } of this.pending.values()) reject(new Error(`the tokenizer thread failed: ${event.message}`));
      this.pending.clear();
      this.worker = undefined;
    };
    worker.postMessage({ type: "init", specifier } satisfies TokenizerRequest);
    this.worker = worker;
    return worker;
  }
}

/**
 * The worker's module: beside this file, or inside a compiled binary, where scripts/build.ts adds it as an entry point
 * and Bun names it by its path from the common folder of the entry points (the repository root).
 */
function workerLocation(): string {
  if (import.meta.url.includes("/$bunfs/")) return "/$bunfs/root/src/engine/tokenizerWorker.ts";
  return new URL("./tokenizerWorker.ts", import.meta.url).href;
}

/** A plain array of the tokens. `Array.from` on a typed array is slow in JavaScriptCore: 60-560 ms for 460 K tokens, a loop 3-40 ms. */
function toArray(tokens: Uint32Array): Token[] {
  const array = new Array<Token>(tokens.length);
  for (let i = 0; i < tokens.length; i++) array[i] = tokens[i] as Token;
  return array;
}
