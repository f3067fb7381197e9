/** Tool schemas -> node-llama-cpp's grammar subset: conversions that keep the shape, 400s that name the path, and a grammar that compiles. */
import { describe, expect, test } from "bun:test";
import { getLlamaRuntime } from "../../src/engine/nodeLlamaCpp.ts";
import { planTools } from "../../src/engine/tools/toolPlan.ts";
import { toGbnfJsonSchema } from "../../src/engine/tools/toolSchema.ts";

const path = "tools[0].parameters";
const convert = (schema: unknown) => toGbnfJsonSchema(schema, path) as unknown;
const problem = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return error as { code: string; param: string; message: string };
  }
  throw new Error("expected a problem");
};
const anyJson = {
  oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }],
};

describe("toGbnfJsonSchema", () => {
  test("Pydantic's Optional (anyOf with null) becomes oneOf; titles and defaults go", () => {
    const schema = {
      type: "object",
      title: "Args",
      properties: { city: { title: "City", type: "string" }, days: { anyOf: [{ type: "integer" }, { type: "null" }], default: null } },
      required: ["city"],
    };
    expect(convert(schema)).toEqual({
      type: "object",
      properties: { city: { type: "string" }, days: { oneOf: [{ type: "integer" }, { type: "null" }] } },
      required: ["city"],
    });
  });

  test("type lists become oneOf, each branch with the keywords of its type", () => {
    const schema = {
      type: "object",
      properties: { opts: { type: ["object", "null"], properties: { a: { type: "string", maxLength: 3 } } } },
    };
    expect(convert(schema)).toEqual({
      type: "object",
      properties: { opts: { oneOf: [{ type: "object", properties: { a: { type: "string", maxLength: 3 } } }, { type: "null" }] } },
    });
    expect(convert({ type: "object", properties: { n: { type: ["integer", "null"] } } })).toEqual({
      type: "object",
      properties: { n: { type: ["integer", "null"] } },
    });
  });

  test("definitions and #/definitions references move to $defs; a single allOf merges; OpenAPI nullable", () => {
    const schema = {
      type: "object",
      properties: {
        a: { $ref: "#/definitions/x" },
        b: { allOf: [{ type: "boolean" }], description: "flag" },
        c: { type: "string", nullable: true },
      },
      definitions: { x: { type: "string", enum: ["p", "q"] } },
    };
    expect(convert(schema)).toEqual({
      $defs: { x: { enum: ["p", "q"] } },
      type: "object",
      properties: {
        a: { $ref: "#/$defs/x" },
        b: { description: "flag", type: "boolean" },
        c: { oneOf: [{ type: "string" }, { type: "null" }] },
      },
    });
  });

  test("an empty schema is any JSON (node-llama-cpp would make it null); properties without type make an object", () => {
    expect(convert({ type: "object", properties: { value: {} } })).toEqual({ type: "object", properties: { value: anyJson } });
    expect(convert({ properties: { a: { type: "number" } } })).toEqual({ type: "object", properties: { a: { type: "number" } } });
  });

  test("value constraints the grammar cannot enforce are dropped; unknown formats are annotations, date formats are kept", () => {
    const schema = {
      $schema: "http://json-schema.org/draft-07/schema#",
      type: "object",
      additionalProperties: false,
      properties: {
        n: { type: "integer", minimum: -9007199254740991, maximum: 9007199254740991 },
        zip: { type: "string", pattern: "^[0-9]{5}$", maxLength: 5 },
        to: { type: "string", format: "email" },
        when: { type: "string", format: "date" },
      },
    };
    expect(convert(schema)).toEqual({
      type: "object",
      additionalProperties: false,
      properties: {
        n: { type: "integer" },
        zip: { type: "string", maxLength: 5 },
        to: { type: "string" },
        when: { type: "string", format: "date" },
      },
    });
  });

  test.each([
    [{ type: "object", properties: { x: { not: { type: "string" } } } }, `${path}.properties.x.not`, "unsupported JSON Schema keyword"],
    [{ type: "object", properties: { x: { allOf: [{ type: "string" }, { maxLength: 2 }] } } }, `${path}.properties.x.allOf`, "single"],
    [{ type: "object", properties: { a: { $ref: "https://example.com/s.json" } } }, `${path}.properties.a.$ref`, "local references"],
    [{ type: "string" }, `${path}.type`, "must be an object schema"],
    [{ type: "object", properties: { x: { type: "date" } } }, `${path}.properties.x.type`, "unknown type"],
    [{ type: "object", required: ["nope"], properties: {} }, `${path}.required`, "names from properties"],
    [{ type: "object", properties: { x: { type: "string", maxLength: -1 } } }, `${path}.properties.x.maxLength`, "non-negative"],
    [{ type: "object", patternProperties: { "^a": { type: "string" } } }, `${path}.patternProperties`, "unsupported"],
    ["object", path, "must be a JSON Schema object"],
  ])("refuses %j naming %s", (schema, param, message) => {
    const error = problem(() => convert(schema));
    expect(error.code).toBe("invalid_request");
    expect(error.param).toBe(param);
    expect(error.message).toStartWith(`${param}: `);
    expect(error.message).toContain(message);
  });

  test("converted schemas compile into grammars that accept matching JSON", async () => {
    const llama = await getLlamaRuntime({ maxThreads: 1, gpu: false });
    const schema = convert({
      type: "object",
      properties: { a: { anyOf: [{ type: "integer" }, { type: "null" }] }, b: {}, c: { $ref: "#/$defs/e" } },
      $defs: { e: { enum: ["x", "y"] } },
    });
    const grammar = await llama.createGrammarForJsonSchema(schema as never);
    const parsed: unknown = grammar.parse('{"a": null, "b": [1, {"k": true}], "c": "y"}');
    expect(parsed).toEqual({ a: null, b: [1, { k: true }], c: "y" });
    expect(() => grammar.parse('{"a": "no", "b": 1, "c": "y"}')).toThrow();
  });
});

describe("planTools", () => {
  const tools = [
    { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
    { name: "ping", description: "no parameters" },
  ];

  test("no tools or tool choice none: no plan (plain decoding); tools are still checked", () => {
    expect(planTools({})).toBeUndefined();
    expect(planTools({ tools: [] })).toBeUndefined();
    expect(planTools({ tools, toolChoice: "none" })).toBeUndefined();
    expect(problem(() => planTools({ tools: [{ name: "bad name" }], toolChoice: "none" })).param).toBe("tools[0].name");
  });

  test("auto calls any tool freely; required and a named tool force; parallel calls off = one", () => {
    const auto = planTools({ tools })!;
    expect(auto.forced).toBe(false);
    expect(Object.keys(auto.callable)).toEqual(["get_weather", "ping"]);
    expect(auto.maxParallelCalls).toBeUndefined();
    expect(auto.functions.ping).toEqual({ description: "no parameters", params: undefined });
    const named = planTools({ tools, toolChoice: { name: "ping" }, parallelToolCalls: false })!;
    expect(named.forced).toBe(true);
    expect(Object.keys(named.callable)).toEqual(["ping"]);
    expect(Object.keys(named.functions)).toEqual(["get_weather", "ping"]);
    expect(named.maxParallelCalls).toBe(1);
    expect(planTools({ tools, toolChoice: "required" })!.forced).toBe(true);
  });

  test.each([
    [{ tools, toolChoice: { name: "nope" } }, "toolChoice", "not among the tools"],
    [{ toolChoice: "required" as const }, "toolChoice", "requires tools"],
    [{ tools, format: "json" as const }, "format", "cannot be combined with tools"],
    [{ tools: [tools[0]!, tools[0]!] }, "tools[1].name", "earlier tool"],
    [{ tools: [{ name: "" }] }, "tools[0].name", "1-64 characters"],
    [
      { tools: [{ name: "a", parameters: { type: "object", properties: { x: { oneOf: [] } } } }] },
      "tools[0].parameters.properties.x.oneOf",
      "non-empty",
    ],
  ])("%j is a problem naming %s", (request, param, message) => {
    const error = problem(() => planTools(request as never));
    expect(error.param).toBe(param);
    expect(error.message).toContain(message);
  });
});
