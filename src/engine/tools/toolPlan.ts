/** What a chat request asks of tool calling, checked before any work: the functions to document, the ones the model may call, forced or not. */
import type { ChatModelFunctions, Llama } from "node-llama-cpp";
import { LlamaportError } from "../EngineError.ts";
import { schemaGrammar } from "../grammarFor.ts";
import type { ToolDefinition } from "../toolTypes.ts";
import type { ChatRequest } from "../types.ts";
import { schemaError, toGbnfJsonSchema } from "./toolSchema.ts";

export interface ToolPlan {
  /** Every tool of the request, documented in the prompt. */
  functions: ChatModelFunctions;
  /** The tools the model may call now: all of them, or the one a named choice forces. */
  callable: ChatModelFunctions;
  /** `required` or a named tool: the turn starts with a call generated under grammars. */
  forced: boolean;
  /** 1 when parallel calls are off; undefined = as many as the model family allows. */
  maxParallelCalls?: number;
}

/** Names the function-name grammar can hold (node-llama-cpp refuses whitespace and empty names). */
const toolName = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The plan for a request, or undefined when it generates without tools (none offered, or `toolChoice: "none"`). */
export function planTools(
  request: Pick<
    ChatRequest,
    "tools" | "toolChoice" | "parallelToolCalls" | "format" | "grammar" | "logprobs" | "reportTokens" | "scorePrompt"
  >,
): ToolPlan | undefined {
  const functions = toFunctions(request.tools ?? []);
  const choice = request.toolChoice ?? "auto";
  const names = Object.keys(functions);
  if (choice === "none") return undefined;
  if (names.length === 0) {
    if (choice === "auto") return undefined;
    throw new LlamaportError("invalid_request", "toolChoice requires tools, and none were given", { param: "toolChoice" });
  }
  refuseWithTools(request);
  let callable = functions;
  if (typeof choice === "object") {
    const chosen = functions[choice.name];
    if (!chosen)
      throw new LlamaportError("invalid_request", `toolChoice names "${choice.name}", which is not among the tools (${names.join(", ")})`, {
        param: "toolChoice",
      });
    callable = { [choice.name]: chosen };
  } else if (choice !== "auto" && choice !== "required")
    throw new LlamaportError("invalid_request", `toolChoice must be auto, none, required or a tool name`, { param: "toolChoice" });
  return { functions, callable, forced: choice !== "auto", maxParallelCalls: request.parallelToolCalls === false ? 1 : undefined };
}

/**
 * What LlamaChat cannot do while it generates with tools: combine its call grammars with an output grammar, or report
 * tokens, log probabilities and prompt scores (those come from llamaport's own decode loop).
 */
function refuseWithTools(request: Parameters<typeof planTools>[0]): void {
  for (const param of ["format", "grammar", "logprobs", "reportTokens", "scorePrompt"] as const) {
    const value = request[param];
    if (value === undefined || value === false) continue;
    throw new LlamaportError("invalid_request", `${param} cannot be combined with tools (unless the tool choice is none)`, { param });
  }
}

function toFunctions(tools: readonly ToolDefinition[]): ChatModelFunctions {
  const functions: Record<string, ChatModelFunctions[string]> = {};
  tools.forEach((tool, i) => {
    if (typeof tool.name !== "string" || !toolName.test(tool.name))
      throw schemaError(`tools[${i}].name`, `must be 1-64 characters of A-Z, a-z, 0-9, _ . : -, got ${JSON.stringify(tool.name)}`);
    if (functions[tool.name]) throw schemaError(`tools[${i}].name`, `"${tool.name}" is the name of an earlier tool too`);
    functions[tool.name] = {
      description: tool.description,
      // No parameters: LlamaChat generates no arguments at all, and the call's arguments are {}.
      params: tool.parameters === undefined ? undefined : toGbnfJsonSchema(tool.parameters, `tools[${i}].parameters`),
    };
  });
  return functions;
}

/**
 * Compiles each tool's arguments grammar once (cached like output grammars), so a schema llama.cpp cannot parse (a
 * `minLength` of 2000 or more) is a 400 naming the tool before any output, not a failure mid-stream.
 */
export async function checkToolGrammars(llama: Llama, plan: ToolPlan): Promise<void> {
  await Promise.all(
    Object.values(plan.functions).map((tool, i) =>
      tool.params === undefined ? undefined : schemaGrammar(llama, tool.params as Record<string, unknown>, `tools[${i}].parameters`),
    ),
  );
}
