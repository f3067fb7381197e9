// Checks models.yaml parsing: normalization and defaults, located error messages, durations, byte sizes, and the committed JSON schema.
import { describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { formatByteSize, parseByteSize } from "../../src/config/byteSize.ts";
import { parseDuration } from "../../src/config/duration.ts";
import { type ChatTemplateSetting, ConfigError, formatKeyPath, loadModelsFile, parseModelsYaml } from "../../src/config/loadModelsFile.ts";
import { buildJsonSchema, CHAT_TEMPLATE_NAMES } from "../../src/config/modelsSchema.ts";
import { renderJsonSchema } from "../../scripts/generateSchema.ts";

const FILE = "/srv/llamaport/models.yaml";

/** Parses `text` expecting a ConfigError, and returns it. */
function configError(text: string, file = "models.yaml"): ConfigError {
  try {
    parseModelsYaml(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError, but the file parsed");
}

describe("parseModelsYaml: valid files", () => {
  test("every key is read and normalized", () => {
    const config = parseModelsYaml(
      `# yaml-language-server: $schema=./models.schema.json
max_loaded_models: 2
memory_budget: 8GiB
models:
  demo:
    source: synthetic:demo
    aliases: [Meta-Llama-3-8B-Instruct, gpt-4o]
    context: 2048
    parallel: 2
    threads: 1
    gpu_layers: max
    chat_template: llama3.1
    keep_alive: 1h30m
    max_queue: 16
    speculative: "off"
    defaults:
      temperature: 0.8
      top_p: 0.9
      top_k: 40
      min_p: 0.05
      seed: 42
      max_tokens: 256
      stop: ["\\n\\n", "</s>"]
      repeat_penalty: 1.1
      presence_penalty: 0
      frequency_penalty: 0.5
`,
      FILE,
    );
    expect(config).toEqual({
      file: FILE,
      maxLoadedModels: 2,
      memoryBudget: 8 * 1024 ** 3,
      apiKeys: [],
      defaultModel: "demo", // the only model
      models: [
        {
          name: "demo",
          source: "synthetic:demo",
          aliases: ["Meta-Llama-3-8B-Instruct", "gpt-4o"],
          context: 2048,
          parallel: 2,
          threads: 1,
          gpuLayers: "max",
          chatTemplate: { kind: "wrapper", name: "llama3.1" },
          keepAliveMs: 90 * 60_000,
          maxQueue: 16,
          speculative: "off",
          defaults: {
            temperature: 0.8,
            topP: 0.9,
            topK: 40,
            minP: 0.05,
            seed: 42,
            maxTokens: 256,
            stop: ["\n\n", "</s>"],
            repeatPenalty: 1.1,
            presencePenalty: 0,
            frequencyPenalty: 0.5,
          },
        },
      ],
    });
  });

  test("defaults are filled in and sources resolved against the yaml file's folder", () => {
    const config = parseModelsYaml(
      `models:
  tiny:
    source: weights/tiny.gguf
  abs:
    source: /opt/models/abs.gguf
    gpu_layers: 0
    keep_alive: -1
  web:
    source: https://example.com/x.gguf
    keep_alive: 0
  hub:
    source: hf:someone/some-repo/sub/dir/model-Q4_K_M.gguf
    keep_alive: 90
  "llama3.1:8b":
    source: ../shared/llama.gguf
`,
      FILE,
    );
    expect(config.maxLoadedModels).toBe(3);
    expect(config.memoryBudget).toBe("auto");
    expect(config.models.map((m) => m.name)).toEqual(["tiny", "abs", "web", "hub", "llama3.1:8b"]);
    const [tiny, abs, web, hub, dotted] = config.models;
    expect(tiny).toEqual({
      name: "tiny",
      source: "/srv/llamaport/weights/tiny.gguf",
      aliases: [],
      context: 4096,
      parallel: 4,
      gpuLayers: "auto",
      chatTemplate: { kind: "auto" },
      keepAliveMs: 5 * 60_000,
      maxQueue: 512,
      speculative: "auto",
      defaults: {},
    });
    expect("threads" in tiny!).toBe(false);
    // Unquoted on/off are strings in YAML 1.2, not booleans.
    const unquoted = parseModelsYaml(
      "models:\n  a:\n    source: a.gguf\n    speculative: off\n  b:\n    source: b.gguf\n    speculative: on\n",
      FILE,
    );
    expect(unquoted.models.map((m) => m.speculative)).toEqual(["off", "on"]);
    expect(abs!.source).toBe("/opt/models/abs.gguf");
    expect(abs!.gpuLayers).toBe(0);
    expect(abs!.keepAliveMs).toBe(-1);
    expect(web!.source).toBe("https://example.com/x.gguf");
    expect(web!.keepAliveMs).toBe(0);
    expect(hub!.source).toBe("hf:someone/some-repo/sub/dir/model-Q4_K_M.gguf");
    expect(hub!.keepAliveMs).toBe(90_000);
    expect(dotted!.source).toBe("/srv/shared/llama.gguf");
  });

  test("a relative file name anchors sources to the working directory's resolution of it", () => {
    const config = parseModelsYaml("models:\n  a:\n    source: a.gguf\n", "conf/models.yaml");
    expect(config.file).toBe(resolve("conf/models.yaml"));
    expect(config.models[0]!.source).toBe(resolve("conf/a.gguf"));
  });

  test("an empty file, a bare `models:` and an empty map all mean zero models", () => {
    for (const text of ["", "# nothing yet\n", "models:\n", "models: {}\n", "max_loaded_models: 1\n"]) {
      expect(parseModelsYaml(text, FILE).models).toEqual([]);
    }
  });

  test("memory_budget takes auto, sizes and byte counts", () => {
    const budget = (value: string) => parseModelsYaml(`memory_budget: ${value}\n`, FILE).memoryBudget;
    expect(budget("auto")).toBe("auto");
    expect(budget("512MB")).toBe(512e6);
    expect(budget("1.5G")).toBe(1.5 * 1024 ** 3);
    expect(budget("1048576")).toBe(1048576);
    expect(budget('"1048576"')).toBe(1048576);
  });

  test("default_model: a name or alias (resolved to the name); without it the only model, or none when there are several", () => {
    const two = "models:\n  a:\n    source: synthetic:demo\n    aliases: [alpha]\n  b:\n    source: synthetic:demo\n";
    expect(parseModelsYaml(two, FILE).defaultModel).toBeUndefined();
    expect(parseModelsYaml(`default_model: b\n${two}`, FILE).defaultModel).toBe("b");
    expect(parseModelsYaml(`default_model: alpha\n${two}`, FILE).defaultModel).toBe("a");
    expect(parseModelsYaml("models:\n  only:\n    source: synthetic:demo\n", FILE).defaultModel).toBe("only");
    expect(parseModelsYaml("", FILE).defaultModel).toBeUndefined();
    const error = configError(`default_model: c\n${two}`);
    expect([error.line, error.column, error.key]).toEqual([1, 16, "default_model"]);
    expect(error.problem).toBe('no model or alias is named "c"; models: a, b');
  });

  test("every hard-coded chat template name is accepted, in any letter case", () => {
    const templateOf = (value: string) =>
      parseModelsYaml(`models:\n  m:\n    source: synthetic:demo\n    chat_template: ${JSON.stringify(value)}\n`, FILE).models[0]!
        .chatTemplate;
    for (const name of CHAT_TEMPLATE_NAMES) {
      const expected: ChatTemplateSetting = name === "auto" ? { kind: "auto" } : { kind: "wrapper", name };
      expect(templateOf(name)).toEqual(expected);
      expect(templateOf(name.toUpperCase())).toEqual(expected);
    }
    expect(templateOf("chatml")).toEqual({ kind: "wrapper", name: "chatML" });
    expect(templateOf("LLAMA2CHAT")).toEqual({ kind: "wrapper", name: "llama2Chat" });
  });

  test("chat_template takes a Jinja template inline, or from a file relative to models.yaml", async () => {
    const dir = await mkdtemp(join(tmpdir(), "llamaport-template-"));
    try {
      const jinja = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>";
      await writeFile(join(dir, "chat.jinja"), jinja);
      const inline = parseModelsYaml(`models:\n  m:\n    source: x.gguf\n    chat_template: ${JSON.stringify(jinja)}\n`, FILE);
      expect(inline.models[0]!.chatTemplate).toEqual({ kind: "jinja", template: jinja });
      const fromFile = parseModelsYaml("models:\n  m:\n    source: x.gguf\n    chat_template: chat.jinja\n", join(dir, "models.yaml"));
      expect(fromFile.models[0]!.chatTemplate).toEqual({ kind: "jinja", template: jinja, file: join(dir, "chat.jinja") });
      // A file that is not a template is refused where it is named.
      await writeFile(join(dir, "notes.txt"), "just words");
      const error = configError("models:\n  m:\n    source: x.gguf\n    chat_template: notes.txt\n", join(dir, "models.yaml"));
      expect([error.line, error.column, error.key]).toEqual([4, 20, "models.m.chat_template"]);
      expect(error.problem).toBe(`${join(dir, "notes.txt")} does not look like a Jinja chat template (it has no {% or {{)`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("YAML anchors and aliases are followed", () => {
    const config = parseModelsYaml(
      `models:
  a:
    source: synthetic:demo
    defaults: &d { temperature: 0.2, stop: [END] }
  b:
    source: synthetic:demo
    defaults: *d
`,
      FILE,
    );
    expect(config.models[1]!.defaults).toEqual({ temperature: 0.2, stop: ["END"] });
  });
});

describe("parseModelsYaml: errors", () => {
  test("unknown top-level key", () => {
    const error = configError("max_loaded_models: 2\nmax_loaded_model: 3\nmodels: {}\n");
    expect(error.line).toBe(2);
    expect(error.column).toBe(1);
    expect(error.key).toBe("max_loaded_model");
    expect(error.message).toStartWith(
      "models.yaml:2:1: max_loaded_model: unknown key; expected one of max_loaded_models, memory_budget, api_keys, default_model, models",
    );
    expect(error.message).toContain('did you mean "max_loaded_models"?');
  });

  test("unknown key in a model entry", () => {
    const error = configError(
      `# comment
max_loaded_models: 2
models:
  demo:
    source: synthetic:demo
    aliases: [Meta-Llama-3-8B-Instruct]
    contex: 2048
`,
    );
    expect(error.message).toBe(
      'models.yaml:7:5: models.demo.contex: unknown key; expected one of source, aliases, context, parallel, threads, speculative, gpu_layers, chat_template, keep_alive, max_queue, use_mmap, defaults (did you mean "context"?)',
    );
    expect(error.file).toBe("models.yaml");
    expect([error.line, error.column, error.key]).toEqual([7, 5, "models.demo.contex"]);
    expect(error.problem).toStartWith("unknown key;");
  });

  test("unknown key in sampling defaults", () => {
    const error = configError(
      `models:
  demo:
    source: synthetic:demo
    defaults:
      temperature: 0.7
      temprature: 0.8
`,
    );
    expect([error.line, error.column, error.key]).toEqual([6, 7, "models.demo.defaults.temprature"]);
    expect(error.message).toContain("unknown key; expected one of temperature, top_p, top_k");
    expect(error.message).toContain('did you mean "temperature"?');
  });

  test("wrong type points at the value and says what was expected", () => {
    const error = configError(
      `max_loaded_models: 2
memory_budget: auto
models:
  demo:
    source: synthetic:demo
    aliases: [Meta-Llama-3-8B-Instruct]
    context: 2048
    threads: 1
    parallel: four
`,
    );
    expect(error.message).toBe('models.yaml:9:15: models.demo.parallel: expected an integer >= 1, got "four"');
    expect([error.line, error.column, error.key]).toEqual([9, 15, "models.demo.parallel"]);
  });

  test.each([
    ["max_loaded_models: 0\n", 1, 20, "max_loaded_models", "expected an integer >= 1, got 0"],
    ["models:\n  m:\n    source: x.gguf\n    context: 1.5\n", 4, 14, "models.m.context", "expected an integer >= 1, got 1.5"],
    [
      "models:\n  m:\n    source: x.gguf\n    defaults: {top_p: 2}\n",
      4,
      23,
      "models.m.defaults.top_p",
      "expected a number between 0 and 1, got 2",
    ],
    [
      "models:\n  m:\n    source: x.gguf\n    defaults:\n      stop: END\n",
      5,
      13,
      "models.m.defaults.stop",
      'expected a list of strings of at most 16 items, got "END"',
    ],
    [
      "models:\n  m:\n    source: x.gguf\n    aliases: [ok, 7]\n",
      4,
      19,
      "models.m.aliases[1]",
      "expected a name starting with a letter or digit",
    ],
    [
      'models:\n  m:\n    source: x.gguf\n    aliases: ["has space"]\n',
      4,
      15,
      "models.m.aliases[0]",
      "expected a name starting with a letter or digit",
    ],
    [
      "models:\n  m:\n    source: x.gguf\n    gpu_layers: all\n",
      4,
      17,
      "models.m.gpu_layers",
      'expected "auto", "max" or an integer >= 0, got "all"',
    ],
    ["models:\n  m:\n    source: x.gguf\n    keep_alive: 5 minutes\n", 4, 17, "models.m.keep_alive", 'expected a duration such as "5m"'],
    [
      "models:\n  m:\n    source: x.gguf\n    speculative: yes\n",
      4,
      18,
      "models.m.speculative",
      'expected "auto", "on" or "off", got "yes"',
    ],
    [
      "models:\n  m:\n    source: x.gguf\n    chat_template: llama4\n",
      4,
      20,
      "models.m.chat_template",
      'expected "auto", a node-llama-cpp chat wrapper name (general, deepSeek, qwen',
    ],
    ["memory_budget: lots\n", 1, 16, "memory_budget", 'expected "auto", a size such as "8GiB"'],
    ["memory_budget: 0GB\n", 1, 16, "memory_budget", 'expected a size greater than 0, got "0GB"'],
    ["models:\n  m:\n    source:\n", 3, 5, "models.m.source", "expected a non-empty string, got an empty value"],
    ["models:\n  m:\n  n:\n    source: x\n", 2, 3, "models.m", "expected a mapping of keys to values, got an empty value"],
    ["models:\n  1:\n    source: x\n    parallel: x\n", 4, 15, "models.1.parallel", 'expected an integer >= 1, got "x"'],
    ["models:\n  m:\n    source: hf:only-owner/model.gguf\n", 3, 13, "models.m.source", "expected hf:<owner>/<repo>/<file.gguf>"],
    ["models: [a, b]\n", 1, 9, "models", "expected a mapping of keys to values, got a list"],
    ["- just\n- a list\n", 1, 1, undefined, "expected a mapping of keys to values, got a list"],
  ])("%j -> line %d col %d", (text, line, column, key, problem) => {
    const error = configError(text);
    expect([error.line, error.column, error.key]).toEqual([line, column, key]);
    expect(error.problem).toStartWith(problem);
    expect(error.message).toBe(`models.yaml:${line}:${column}: ${key ? `${key}: ` : ""}${error.problem}`);
  });

  test("the first problem in the file is reported, whatever order the schema checks in", () => {
    const error = configError(
      `models:
  a:
    source: synthetic:demo
    parallel: 0
  b:
    source: synthetic:demo
    bogus: 1
`,
    );
    expect([error.line, error.key]).toEqual([4, "models.a.parallel"]);
  });

  test("a missing required key points at the entry that lacks it", () => {
    const error = configError("models:\n  demo:\n    context: 2048\n");
    expect(error.message).toBe('models.yaml:2:3: models.demo: missing required key "source"');
  });

  test("an invalid model name points at the name", () => {
    const error = configError("models:\n  ok:\n    source: a.gguf\n  -bad:\n    source: b.gguf\n");
    expect([error.line, error.column, error.key]).toEqual([4, 3, "models.-bad"]);
    expect(error.problem).toStartWith('invalid model name "-bad"');
  });

  test("YAML syntax errors carry the line", () => {
    const error = configError("models:\n  demo:\n    source: synthetic:demo\n    aliases: [a, b\n    context: 1\n");
    expect(error.problem).toStartWith("YAML syntax error:");
    expect(error.line).toBeGreaterThanOrEqual(4);
    expect(error.message).toStartWith(`models.yaml:${error.line}:${error.column}: YAML syntax error:`);

    const tab = configError("models:\n  demo:\n\tsource: x\n");
    expect(tab.line).toBe(3);

    const documents = configError("models: {}\n---\nmodels: {}\n");
    expect([documents.line, documents.problem]).toEqual([
      2,
      'YAML syntax error: more than one YAML document; a models file is one document, so remove this "---" and what follows',
    ]);

    const duplicate = configError("models:\n  a:\n    source: x.gguf\n  a:\n    source: y.gguf\n");
    expect(duplicate.line).toBe(4);
    expect(duplicate.problem).toContain("unique");
  });

  test("an alias used twice names both models", () => {
    const error = configError(
      `models:
  first:
    source: synthetic:demo
    aliases: [shared]
  second:
    source: synthetic:demo
    aliases: [other, shared]
`,
    );
    expect([error.line, error.column, error.key]).toEqual([7, 22, "models.second.aliases[1]"]);
    expect(error.problem).toBe(
      'alias "shared" is already an alias of model "first" (line 4); names and aliases must be unique across the file',
    );
  });

  test("an alias equal to another model's name, even a later one, names both", () => {
    const error = configError(
      `models:
  first:
    source: synthetic:demo
    aliases: [second]
  second:
    source: synthetic:demo
`,
    );
    expect([error.line, error.key]).toEqual([4, "models.first.aliases[0]"]);
    expect(error.problem).toStartWith('alias "second" is already the name of model "second" (line 5)');
  });

  test("an alias repeating its own model's name, or repeated in one list, is an error", () => {
    expect(configError("models:\n  a:\n    source: x\n    aliases: [a]\n").problem).toStartWith(`alias "a" is this model's own name`);
    expect(configError("models:\n  a:\n    source: x\n    aliases: [b, b]\n").key).toBe("models.a.aliases[1]");
  });

  test("key paths quote names that would read ambiguously", () => {
    expect(formatKeyPath(["models", "llama3.1:8b", "aliases", 0])).toBe('models["llama3.1:8b"].aliases[0]');
    expect(formatKeyPath(["models", "org/model:latest", "context"])).toBe("models.org/model:latest.context");
    const error = configError('models:\n  "llama3.1:8b":\n    source: x\n    parallel: -1\n');
    expect(error.key).toBe('models["llama3.1:8b"].parallel');
    expect(error.line).toBe(4);
  });
});

describe("loadModelsFile", () => {
  test("reads a file, and a missing file is a ConfigError naming it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "llamaport-config-"));
    try {
      const file = join(dir, "models.yaml");
      await writeFile(file, "models:\n  demo:\n    source: demo.gguf\n");
      const config = await loadModelsFile(file);
      expect(config.file).toBe(file);
      expect(config.models[0]!.source).toBe(join(dir, "demo.gguf"));

      const missing = join(dir, "nope.yaml");
      const error = await loadModelsFile(missing).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).file).toBe(missing);
      expect((error as ConfigError).message).toStartWith(`${missing}: models file not found`);

      const bad = join(dir, "bad.yaml");
      await writeFile(bad, "models:\n  demo:\n    source: a.gguf\n    parallel: many\n");
      await expect(loadModelsFile(bad)).rejects.toThrow(`${bad}:4:15: models.demo.parallel: expected an integer >= 1`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("parseDuration", () => {
  test.each([
    [0, 0],
    [30, 30_000],
    [0.25, 250],
    [-1, -1],
    [-0.5, -1],
    ["0", 0],
    ["300", 300_000],
    ["1.5", 1_500],
    ["-1", -1],
    ["5m", 300_000],
    ["30s", 30_000],
    ["250ms", 250],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["2h45m30s", 9_930_000],
    ["1.5h", 5_400_000],
    ["-1m", -1],
    ["-0s", 0],
    ["+10s", 10_000],
    ["1500us", 2],
    ["1000000ns", 1],
    ["1s500ms", 1_500],
  ] as [string | number, number][])("%p -> %p ms", (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  test.each(["", "5 m", "5min", "m", "1d", "abc", "5m-", "--1", "1h 30m", "."])("%p is rejected", (input) => {
    expect(() => parseDuration(input)).toThrow(/invalid duration/);
  });

  test("non-finite numbers are rejected", () => {
    expect(() => parseDuration(Number.NaN)).toThrow(/invalid duration/);
    expect(() => parseDuration(Number.POSITIVE_INFINITY)).toThrow(/invalid duration/);
  });
});

describe("parseByteSize", () => {
  test.each([
    [0, 0],
    [1024, 1024],
    [1536.7, 1536],
    ["0", 0],
    ["100", 100],
    ["100B", 100],
    ["1K", 1024],
    ["1KB", 1000],
    ["1KiB", 1024],
    ["512MB", 512_000_000],
    ["512MiB", 512 * 1024 ** 2],
    ["8GiB", 8 * 1024 ** 3],
    ["8gib", 8 * 1024 ** 3],
    ["8GB", 8e9],
    ["1.5G", 1.5 * 1024 ** 3],
    ["1.5g", 1.5 * 1024 ** 3],
    ["2T", 2 * 1024 ** 4],
    ["1TB", 1e12],
    ["8 GiB", 8 * 1024 ** 3],
    [".5K", 512],
  ] as [string | number, number][])("%p -> %p bytes", (input, bytes) => {
    expect(parseByteSize(input)).toBe(bytes);
  });

  test.each(["", "GiB", "8 GiBs", "8XB", "-1G", "1,5G", "8Gi", "eight", "1e9"])("%p is rejected", (input) => {
    expect(() => parseByteSize(input)).toThrow(/invalid size/);
  });

  test("negative and non-finite numbers are rejected", () => {
    expect(() => parseByteSize(-1)).toThrow(/invalid size/);
    expect(() => parseByteSize(Number.NaN)).toThrow(/invalid size/);
  });

  test("formatByteSize", () => {
    expect(formatByteSize(512)).toBe("512 B");
    expect(formatByteSize(1536)).toBe("1.5 KiB");
    expect(formatByteSize(8 * 1024 ** 3)).toBe("8 GiB");
  });
});

describe("models.schema.json", () => {
  test("the committed file is what scripts/generateSchema.ts generates", async () => {
    const committed = await readFile(join(import.meta.dir, "..", "..", "models.schema.json"), "utf8");
    expect(JSON.parse(committed)).toEqual(buildJsonSchema());
    expect(committed).toBe(renderJsonSchema());
  });

  test("it is draft-07, titled, closed to unknown keys and describes every field", () => {
    const schema = buildJsonSchema() as Record<string, any>;
    expect(schema.$schema).toBe("http://json-schema.org/draft-07/schema#");
    expect(schema.title).toBeString();
    const entry = Object.values(schema.properties.models.patternProperties)[0] as Record<string, any>;
    for (const object of [schema, schema.properties.models, entry, entry.properties.defaults]) {
      expect(object.additionalProperties).toBe(false);
      expect(object.description).toBeString();
      for (const [name, field] of Object.entries((object.properties ?? {}) as Record<string, any>))
        expect(`${name}: ${typeof field.description}`).toBe(`${name}: string`);
    }
  });
});
