/** `llamaport show MODEL`: what the registry and the GGUF header say about a model (read without loading it). */
import type { ModelInfo } from "../../engine/types.ts";
import { formatBytes, formatParameters } from "../format.ts";
import { openLocalEngine } from "../localEngine.ts";
import type { ServeSettings } from "../parseArgs.ts";

export async function show(name: string, settings: ServeSettings): Promise<number> {
  await using local = await openLocalEngine(settings);
  const { engine } = local;
  const found = (await engine.findModel(name)) ?? (await engine.findModel(name.replace(/:latest$/, "")));
  if (!found) engine.registry.resolve(name); // throws "not found; available: ..."
  let model = found!;
  // A synthetic model is written in a moment, without a network: write it to read its header.
  if (!model.facts && model.source.startsWith("synthetic:")) {
    await engine.pull({ source: model.name });
    model = (await engine.findModel(model.name))!;
  }
  process.stdout.write(describe(model));
  return 0;
}

function describe(model: ModelInfo): string {
  const facts = model.facts;
  const lines: string[] = ["  Model"];
  const row = (label: string, value: string | number | undefined) => {
    if (value !== undefined && value !== "") lines.push(`    ${label.padEnd(18)}${value}`);
  };
  row("name", model.name);
  row("aliases", model.aliases.join(", "));
  row("source", model.source);
  if (!facts) {
    row("file", `not downloaded yet: \`llamaport pull ${model.name}\` fetches it`);
    row("context", model.context);
    return `${lines.join("\n")}\n`;
  }
  row("file", `${model.file} (${formatBytes(model.sizeBytes ?? 0)})`);
  row("architecture", facts.architecture);
  row("parameters", formatParameters(facts.parameterCount));
  row("quantization", facts.quantization);
  row("context length", `${model.context}${facts.trainedContext ? ` (trained with ${facts.trainedContext})` : ""}`);
  row("embedding length", facts.embeddingLength);
  row("parallel", model.parallel);
  lines.push("", "  Capabilities", ...model.capabilities.map((capability) => `    ${capability}`));
  const defaults = Object.entries(model.defaults).filter(([, value]) => value !== undefined);
  if (defaults.length > 0) {
    lines.push("", "  Parameters (models.yaml defaults)");
    for (const [key, value] of defaults) row(key, JSON.stringify(value));
  }
  lines.push("", "  Chat template");
  if (model.chatTemplate) lines.push(...model.chatTemplate.split("\n").map((line) => `    ${line}`));
  else if (facts.chatTemplate) lines.push("    a node-llama-cpp chat wrapper named by chat_template in models.yaml");
  else lines.push("    none in the GGUF: chats are rendered with ChatML (set chat_template in models.yaml to change it)");
  const license = facts.metadata["general.license"];
  if (typeof license === "string") lines.push("", "  License", `    ${license}`);
  return `${lines.join("\n")}\n`;
}
