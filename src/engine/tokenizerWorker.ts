/** Worker thread of OffThreadTokenizer: tokenizes large texts with vocabulary-only copies of the loaded models. */
import type { Llama, LlamaModel, LlamaTextJSON } from "node-llama-cpp";
import type * as NodeLlamaCpp from "node-llama-cpp";

declare const self: Worker;

export type TokenizerRequest =
  | { type: "init"; specifier: string }
  | { type: "tokenize"; id: number; modelPath: string; text: string; special: boolean }
  | { type: "tokenizeLlamaText"; id: number; modelPath: string; llamaText: LlamaTextJSON }
  | { type: "release"; modelPath: string };

export type TokenizerReply = { id: number; tokens: Uint32Array } | { id: number; error: string };

let runtime: Promise<{ nlc: typeof NodeLlamaCpp; llama: Llama }> | undefined;
const models = new Map<string, Promise<LlamaModel>>();

function model(modelPath: string): Promise<LlamaModel> {
  let loaded = models.get(modelPath);
  if (!loaded) {
    // No mmap: the file may be replaced while we hold it, and a vocabulary is small.
    loaded = runtime!.then(({ llama }) => llama.loadModel({ modelPath, vocabOnly: true, useMmap: false }));
    models.set(modelPath, loaded);
    loaded.catch(() => models.delete(modelPath));
  }
  return loaded;
}

self.onmessage = async (event: MessageEvent<TokenizerRequest>) => {
  const request = event.data;
  if (request.type === "init") {
    runtime = (async () => {
      const nlc = (await import(request.specifier)) as typeof NodeLlamaCpp;
      const llama = await nlc.getLlama({
        build: "never",
        gpu: false,
        maxThreads: 1,
        logLevel: nlc.LlamaLogLevel.error,
        progressLogs: false,
      });
      return { nlc, llama };
    })();
    return;
  }
  if (request.type === "release") {
    const loaded = models.get(request.modelPath);
    models.delete(request.modelPath);
    void loaded?.then((m) => m.dispose()).catch(() => {});
    return;
  }
  try {
    const vocabulary = await model(request.modelPath);
    const tokens =
      request.type === "tokenize"
        ? vocabulary.tokenize(request.text, request.special)
        : (await runtime!).nlc.LlamaText.fromJSON(request.llamaText).tokenize(vocabulary.tokenizer);
    const array = Uint32Array.from(tokens);
    self.postMessage({ id: request.id, tokens: array } satisfies TokenizerReply, [array.buffer]);
  } catch (error) {
    self.postMessage({ id: request.id, error: (error as Error).message } satisfies TokenizerReply);
  }
};
