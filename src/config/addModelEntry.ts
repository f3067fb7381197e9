/**
 * Adds a model to models.yaml the way a person would: the new entry goes after the last model, and every other byte
 * of the file (comments, blank lines, order, quoting) stays as it was. The yaml Document API finds the place; the text
 * is spliced there, because re-printing the whole document loses blank lines.
 */
import { writeFile } from "node:fs/promises";
import { isMap, isScalar, parseDocument, stringify, type YAMLMap } from "yaml";
import { type ModelRegistryConfig, parseModelsYaml } from "./loadModelsFile.ts";

export interface NewModelEntry {
  name: string;
  source: string;
  /** One line written above the entry (without `#`). */
  comment?: string;
}

/** models.yaml's text with `entry` added under `models:`; the result is checked as a whole before it is returned. */
export function addModelToYaml(text: string, entry: NewModelEntry, file: string): { text: string; config: ModelRegistryConfig } {
  const doc = parseDocument(text);
  const models = doc.get("models", true);
  let next: string;
  if (isMap(models) && !models.flow && models.items.length > 0 && models.range) next = spliceEntry(text, models, entry);
  else if (isMap(models) && models.flow && models.items.length > 0) {
    // `models: {a: {...}}`: the entry joins the flow mapping (a comment has no place inside one); yaml prints the file.
    models.set(doc.createNode(entry.name), doc.createNode({ source: entry.source }, { flow: true }));
    next = doc.toString({ flowCollectionPadding: false, lineWidth: 0 });
  } else if (models === undefined || (isScalar(models) && models.value === null) || (isMap(models) && models.items.length === 0)) {
    // No models yet: `models:` gets a block of its own (the rest of the document is printed as yaml keeps it).
    doc.set("models", doc.createNode({ [entry.name]: { source: entry.source } }));
    const pair = (doc.get("models", true) as YAMLMap).items[0];
    if (entry.comment && pair) (pair.key as { commentBefore?: string }).commentBefore = ` ${entry.comment}`;
    next = doc.toString({ flowCollectionPadding: false, lineWidth: 0 });
  } else throw new Error("models: must be a mapping of model names to entries to add a model to it");
  return { text: next, config: parseModelsYaml(next, file) };
}

/** Inserts the entry's lines right after the last model's, indented like the other model names. */
function spliceEntry(text: string, models: YAMLMap, entry: NewModelEntry): string {
  const firstKey = models.items[0]!.key as { range?: [number, number, number] };
  const keyStart = firstKey.range?.[0] ?? 0;
  const indent = " ".repeat(keyStart - (text.lastIndexOf("\n", keyStart - 1) + 1));
  const at = models.range![1];
  const lines = [
    ...(entry.comment ? [`${indent}# ${entry.comment}`] : []),
    `${indent}${scalar(entry.name)}:`,
    `${indent}  source: ${scalar(entry.source)}`,
  ];
  const before = text.slice(0, at);
  // A file written on Windows keeps its line ends.
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const separator = before.endsWith("\n") ? "" : eol;
  return `${before}${separator}${lines.join(eol)}${eol}${text.slice(at)}`;
}

/** A plain scalar where YAML reads it back unchanged, else quoted. */
const scalar = (value: string) => stringify(value, { lineWidth: 0 }).trimEnd();

/**
 * Adds the entry to the file and returns the new registry. Written in place (one small write), so a symlinked
 * models.yaml and its permissions stay as they are.
 */
export async function addModelToFile(file: string, text: string, entry: NewModelEntry): Promise<ModelRegistryConfig> {
  const result = addModelToYaml(text, entry, file);
  await writeFile(file, result.text);
  return result.config;
}
