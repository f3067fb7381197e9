/** The plugins compiled into llamaport, so a binary with no plugins folder still speaks them (and serves the chat page). */
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import anthropic from "../../plugins/anthropic.ts";
import anthropicText from "../../plugins/anthropic.ts" with { type: "text" };
import ollama from "../../plugins/ollama.ts";
import ollamaText from "../../plugins/ollama.ts" with { type: "text" };
import openai from "../../plugins/openai.ts";
import openaiText from "../../plugins/openai.ts" with { type: "text" };
import responses from "../../plugins/responses.ts";
import llamacpp from "../../plugins/llamacpp.ts";
import llamacppText from "../../plugins/llamacpp.ts" with { type: "text" };
import responsesText from "../../plugins/responses.ts" with { type: "text" };
import webchat from "../webchat/webchatPlugin.ts";

export const builtinPlugins: Record<string, PluginDefinition> = { openai, ollama, anthropic, responses, llamacpp, webchat };

/**
 * The source texts of those that ship as files in plugins/: a file there with exactly this text is the built-in itself
 * (a source checkout's plugins/ folder holds these very files), so it is not loaded a second time as a replacement.
 * TypeScript types a text import as the module; Bun gives its text.
 */
export const builtinSources: Record<string, string> = {
  openai: openaiText as unknown as string,
  ollama: ollamaText as unknown as string,
  anthropic: anthropicText as unknown as string,
  responses: responsesText as unknown as string,
  llamacpp: llamacppText as unknown as string,
};
