/** Problems renamed to a plugin's wire names: exact fields, and paths inside lists through `[]` entries. */
import { expect, test } from "bun:test";
import type { Problem } from "../../src/engine/EngineError.ts";
import { wireProblem } from "../../src/server/renderProblem.ts";

const fields = { maxTokens: "max_tokens", "tools[].parameters": "tools[].function.parameters", "tools[].name": "tools[].function.name" };
const problem = (param: string): Problem => ({ code: "invalid_request", status: 400, message: `${param}: bad`, param });

test.each([
  ["maxTokens", "max_tokens"],
  ["tools[2].parameters.properties.zip.pattern", "tools[2].function.parameters.properties.zip.pattern"],
  ["tools[10].parameters", "tools[10].function.parameters"],
  ["tools[0].name", "tools[0].function.name"],
  // Not a field of the table: left as it is.
  ["tools[1].parametersX", "tools[1].parametersX"],
  ["messages[3]", "messages[3]"],
])("%s -> %s, in param and message", (param, wire) => {
  const renamed = wireProblem(problem(param), fields);
  expect(renamed.param).toBe(wire);
  expect(renamed.message).toBe(`${wire}: bad`);
});
