/** Test support for tool calling: tools whose arguments a random-weights model can finish, and the models that call them. */
import { hasSharedModels, type ModelsSpec, storiesModel } from "./testServer.ts";

/**
 * Arguments are bounded (enums, maxLength): random weights never close a free JSON string, and a forced call must
 * finish within the test's token budget.
 */
export const weatherParameters = {
  type: "object",
  properties: { city: { type: "string", enum: ["Paris", "Rome", "Tokyo"] }, unit: { type: "string", enum: ["c", "f"] } },
  required: ["city", "unit"],
};
export const timeParameters = {
  type: "object",
  properties: { tz: { type: "string", maxLength: 8 } },
  required: ["tz"],
};

/** Arguments that match `weatherParameters` (the grammar guarantees it; tests check it). */
export function isWeatherArguments(value: unknown): boolean {
  const args = value as { city?: unknown; unit?: unknown };
  return (
    Object.keys(args).join() === "city,unit" &&
    ["Paris", "Rome", "Tokyo"].includes(args.city as string) &&
    ["c", "f"].includes(args.unit as string)
  );
}

export function isTimeArguments(value: unknown): boolean {
  const args = value as { tz?: unknown };
  return Object.keys(args).join() === "tz" && typeof args.tz === "string" && args.tz.length <= 8;
}

/**
 * `tools`: the writer's tiny-tools model, whose template has tool syntax and which calls a tool at the start of every
 * answer to a user (so `auto` calls), and answers in text after tool results. `stories`: a trained tiny model without
 * a template that never calls by itself. Tool documentation makes prompts long: contexts of 2048.
 */
export const toolModels: ModelsSpec = {
  tools: { source: "synthetic:tiny-tools", context: 2048, parallel: 2 },
  ...(hasSharedModels ? { stories: { source: storiesModel, context: 2048, parallel: 2 } } : {}),
};

/** Models to run the protocol tests on: the writer-made one always, the shared one when present. */
export const toolModelNames = hasSharedModels ? ["tools", "stories"] : ["tools"];

/** Parses an SSE body strictly into events (`event:` optional) with JSON or `[DONE]` data. */
export function sseEvents(text: string): { event?: string; data: any }[] {
  if (!text.endsWith("\n\n")) throw new Error(`an SSE body ends with a blank line: ${JSON.stringify(text.slice(-40))}`);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((block) => {
      const lines = block.split("\n");
      const event = lines[0]!.startsWith("event: ") ? lines.shift()!.slice(7) : undefined;
      if (lines.length !== 1 || !lines[0]!.startsWith("data: ")) throw new Error(`not one data line: ${JSON.stringify(block)}`);
      const data = lines[0]!.slice(6);
      return { event, data: data === "[DONE]" ? data : JSON.parse(data) };
    });
}
