/** The plugins compiled into llamaport, so a binary with no plugins folder still speaks them (and serves the chat page). */
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import openai from "../../plugins/openai.ts";
import ollama from "../../plugins/ollama.ts";
import anthropic from "../../plugins/anthropic.ts";
import responses from "../../plugins/responses.ts";
import llamacpp from "../../plugins/llamacpp.ts";
import webchat from "../webchat/webchatPlugin.ts";

export const builtinPlugins: Record<string, PluginDefinition> = { openai, ollama, anthropic, responses, llamacpp, webchat };
