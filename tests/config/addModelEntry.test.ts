/** Adding a model to models.yaml: every byte of the file stays, the entry lands after the last model, the result is checked. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { addModelToYaml } from "../../src/config/addModelEntry.ts";

const repoModelsYaml = readFileSync(join(import.meta.dir, "../../models.yaml"), "utf8");
const entry = {
  name: "tiny-Q8_0",
  source: "hf:acme/tiny-GGUF/tiny-Q8_0.gguf",
  comment: "pulled from hf:acme/tiny-GGUF:Q8_0 on 2026-01-02",
};

/** The lines of `after` that are not in `before`, when `after` is `before` with lines inserted in one place. */
function inserted(before: string, after: string): { at: number; lines: string[] } {
  const a = before.split("\n");
  const b = after.split("\n");
  let head = 0;
  while (head < a.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  expect(head + tail).toBe(a.length); // nothing of the original changed
  return { at: head, lines: b.slice(head, b.length - tail) };
}

describe("addModelToYaml", () => {
  test("the repository's commented models.yaml: three lines after the last model, every other byte as it was", () => {
    const { text, config } = addModelToYaml(repoModelsYaml, entry, "/x/models.yaml");
    const { at, lines } = inserted(repoModelsYaml, text);
    expect(lines).toEqual([
      "  # pulled from hf:acme/tiny-GGUF:Q8_0 on 2026-01-02",
      "  tiny-Q8_0:",
      "    source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf",
    ]);
    // Right after the demo model's last key, before the commented-out example that closes the file.
    expect(repoModelsYaml.split("\n")[at - 1]).toBe("    keep_alive: 5m");
    expect(config.models.map((m) => [m.name, m.source])).toEqual([
      ["demo", "synthetic:demo"],
      ["tiny-Q8_0", "hf:acme/tiny-GGUF/tiny-Q8_0.gguf"],
    ]);
  });

  test("indentation, inline comments, flow entries and a missing final newline are kept; names that need quotes get them", () => {
    const before = "# mine\nmodels:\n    a: {source: synthetic:demo}   # inline\n    b:\n        source: synthetic:tiny-f32\n# the end";
    const { text } = addModelToYaml(before, { name: "hf.co/acme/tiny-GGUF:Q8_0", source: "https://x.test/a b.gguf" }, "/m.yaml");
    const { lines } = inserted(before, text);
    expect(lines).toEqual(["    hf.co/acme/tiny-GGUF:Q8_0:", "      source: https://x.test/a b.gguf"]);
    const quoted = addModelToYaml(
      "models:\n  a:\n    source: synthetic:demo\n",
      { name: "yes", source: "# not: a comment.gguf" },
      "/m.yaml",
    );
    expect(quoted.config.models.map((m) => [m.name, m.source])).toEqual([
      ["a", "synthetic:demo"],
      ["yes", "/# not: a comment.gguf"], // a path, relative to models.yaml
    ]);
  });

  test("a file with no models yet (empty, a bare `models:`, `models: {}`, no models key) gets a models block", () => {
    for (const before of ["", "models:\n", "models: {}\n", "# registry\nmax_loaded_models: 2 # two\n"]) {
      const { text, config } = addModelToYaml(before, entry, "/m.yaml");
      expect(config.models.map((m) => m.name)).toEqual(["tiny-Q8_0"]);
      expect(text).toContain(
        "  # pulled from hf:acme/tiny-GGUF:Q8_0 on 2026-01-02\n  tiny-Q8_0:\n    source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf\n",
      );
      for (const line of before.split("\n").filter((l) => l.startsWith("#") || l.startsWith("max"))) expect(text).toContain(line);
    }
  });

  test("a flow mapping of models gets the entry inside it; a file with Windows line ends keeps them", () => {
    const flow = addModelToYaml("# mine\nmodels: {demo: {source: synthetic:demo, context: 256}}\n", entry, "/m.yaml");
    expect(flow.text).toBe(
      "# mine\nmodels: {demo: {source: synthetic:demo, context: 256}, tiny-Q8_0: {source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf}}\n",
    );
    expect(flow.config.models.map((m) => m.name)).toEqual(["demo", "tiny-Q8_0"]);
    const crlf = "models:\r\n  demo:\r\n    source: synthetic:demo\r\n# end\r\n";
    const { text } = addModelToYaml(crlf, entry, "/m.yaml");
    expect(text.replace(/\r\n/g, "")).not.toContain("\n");
    expect(text).toContain("  tiny-Q8_0:\r\n    source: hf:acme/tiny-GGUF/tiny-Q8_0.gguf\r\n# end\r\n");
  });

  test("a result that would not be a valid registry is refused, with the file and line", () => {
    expect(() =>
      addModelToYaml("models:\n  demo:\n    source: synthetic:demo\n", { name: "demo", source: "hf:a/b/c.gguf" }, "/m.yaml"),
    ).toThrow("/m.yaml:4:3");
    expect(() => addModelToYaml("models: [a, b]\n", entry, "/m.yaml")).toThrow("models: must be a mapping");
  });
});
