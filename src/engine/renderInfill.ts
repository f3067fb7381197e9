/**
 * Fill-in-the-middle prompts, laid out as llama-server's `/infill` lays them out (`format_prompt_infill`): other files
 * first, then `PRE prefix SUF suffix MID`, trimmed to fit the context instead of refused.
 */
import type { Token } from "node-llama-cpp";
import { LlamaportError } from "./EngineError.ts";
import type { LoadedModel } from "./LoadedModel.ts";
import type { PromptBudget, RenderedPrompt } from "./renderPrompt.ts";
import { withBos } from "./renderPrompt.ts";
import type { InfillFile } from "./types.ts";

/**
 * `[BOS] files PRE prefix SUF suffix MID`, prefix and suffix tokenized as plain text. What does not fit the budget's
 * limit is cut: the suffix keeps its start (at most a quarter), the prefix its end, and the files what room is left,
 * newest last. Texts are cut to what the kept tokens can cover before they are tokenized, so a megabyte of prefix is
 * not tokenized to keep a few thousand tokens of it. Needs the model's prefix, suffix and middle tokens.
 */
export async function renderInfill(
  loaded: LoadedModel,
  prefix: string,
  suffix: string,
  files: readonly InfillFile[],
  budget: PromptBudget,
): Promise<RenderedPrompt> {
  const { prefix: pre, suffix: suf, middle: mid } = loaded.model.tokens.infill;
  if (pre == null || suf == null || mid == null)
    throw new LlamaportError(
      "invalid_request",
      `suffix: model "${loaded.entry.name}" cannot fill in the middle (its vocabulary has no prefix, suffix and middle tokens)`,
      { param: "suffix" },
    );
  const text = (value: string) => budget.tokenizer.text(loaded, value, false);
  const reach = (tokens: number) => reachOf(loaded, tokens);
  // The prompt's limit (a tenth of the window kept for the reply), less PRE, SUF, MID and BOS.
  const room = Math.max(0, budget.limit - 4);
  const afterRoom = Math.floor(room / 4);
  const after = (await text(suffix.slice(0, reach(afterRoom)))).slice(0, afterRoom);
  const beforeRoom = room - after.length;
  const before = await text(prefix.slice(Math.max(0, prefix.length - reach(beforeRoom))));
  const kept = before.slice(Math.max(0, before.length - beforeRoom));
  const spare = room - kept.length - after.length;
  const context = await fileTokens(loaded, files, reach(spare), text);
  const tokens: Token[] = [...context.slice(Math.max(0, context.length - spare)), pre, ...kept, suf, ...after, mid];
  return { tokens: withBos(loaded, tokens), stopTokens: [], stopTexts: [] };
}

/**
 * The characters that surely hold `tokens` tokens of a text: no token covers more than `maxTokenChars`, and 64 tokens
 * more keep the cut's edge (where tokenizing a cut text can differ) out of the tokens that are kept.
 */
function reachOf(loaded: LoadedModel, tokens: number): number {
  return (tokens + 64) * loaded.maxTokenChars;
}

/**
 * The other files as llama-server writes them: with the model's repo and file-separator tokens (Qwen2.5-Coder's
 * `<|repo_name|>`, `<|file_sep|>`) the repo-level layout, `REP myproject\n SEP name\n text ... SEP filename\n`; without
 * them each text after a `--- snippet ---` line. Only their last `chars` characters are tokenized (the end is kept).
 */
async function fileTokens(
  loaded: LoadedModel,
  files: readonly InfillFile[],
  chars: number,
  text: (value: string) => Promise<Token[]>,
): Promise<Token[]> {
  const { repo, separator } = loaded.fileTokens;
  const parts: (Token | string)[] = [];
  if (repo !== undefined) parts.push(repo, "myproject\n");
  for (const file of files) {
    if (separator !== undefined) parts.push(separator, `${file.name ?? "tmp"}\n`);
    else parts.push("\n\n--- snippet ---\n\n");
    parts.push(file.text);
  }
  if (separator !== undefined) parts.push(separator, "filename\n");
  // From the end: the parts that fit in `chars`, the first of them cut to its end.
  let left = chars;
  let first = parts.length;
  while (first > 0 && left > 0) {
    const part = parts[--first]!;
    if (typeof part !== "string") continue;
    if (part.length > left) parts[first] = part.slice(part.length - left);
    left -= part.length;
  }
  const tokens: Token[] = [];
  for (const part of parts.slice(first)) {
    if (typeof part === "string") for (const token of await text(part)) tokens.push(token);
    else tokens.push(part);
  }
  return tokens;
}
