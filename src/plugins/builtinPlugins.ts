/** The protocol plugins compiled into llamaport, so a binary with no plugins folder still speaks them. */
import type { PluginDefinition } from "../pluginApi/definePlugin.ts";
import openai from "../../plugins/openai.ts";
import ollama from "../../plugins/ollama.ts";
import anthropic from "../../plugins/anthropic.ts";

export const builtinPlugins: Record<string, PluginDefinition> = { openai, ollama, anthropic };
