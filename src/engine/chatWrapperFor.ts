/** Picks the chat wrapper a model's chats are rendered with, from models.yaml's `chat_template` and the GGUF. */
import type { ChatWrapper, LlamaModel } from "node-llama-cpp";
import type { ChatTemplateSetting } from "../config/loadModelsFile.ts";
import type { NodeLlamaCppModule } from "./nodeLlamaCpp.ts";

/**
 * - `auto`: the GGUF's Jinja template (node-llama-cpp swaps in its own wrapper where that is equivalent); a GGUF without
 *   one gets ChatML, as llama-server does (node-llama-cpp alone would guess from the file name: Llama 2 chat, General).
 * - a wrapper name: that node-llama-cpp wrapper.
 * - a Jinja template: run by node-llama-cpp's JinjaTemplateChatWrapper; a template that fails its sanity test is an
 *   error when the model loads, never a silent switch to another wrapper.
 */
export function chatWrapperFor(nlc: NodeLlamaCppModule, model: LlamaModel, setting: ChatTemplateSetting): ChatWrapper {
  const ggufTemplate = model.fileInfo.metadata?.tokenizer?.chat_template;
  const hasTemplate = typeof ggufTemplate === "string" && ggufTemplate.trim() !== "";
  switch (setting.kind) {
    case "auto":
      return hasTemplate ? nlc.resolveChatWrapper(model) : new nlc.ChatMLChatWrapper();
    case "jinja":
      return jinjaWrapper(nlc, model, setting.template, setting.file ?? "chat_template");
    case "wrapper":
      if (setting.name !== "jinjaTemplate")
        return nlc.resolveChatWrapper(model, { type: setting.name as "auto", fallbackToOtherWrappersOnJinjaError: false });
      if (!hasTemplate) throw new Error('chat_template "jinjaTemplate": the GGUF has no Jinja chat template (tokenizer.chat_template)');
      return jinjaWrapper(nlc, model, ggufTemplate, "the GGUF's chat template");
  }
}

function jinjaWrapper(nlc: NodeLlamaCppModule, model: LlamaModel, template: string, source: string): ChatWrapper {
  try {
    return new nlc.JinjaTemplateChatWrapper({ template, tokenizer: model.tokenizer });
  } catch (error) {
    throw new Error(`the Jinja chat template (${source}) cannot be used: ${(error as Error).message}`, { cause: error });
  }
}
