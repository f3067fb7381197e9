/** The chat page's Markdown subset: what becomes structure, and that markup, handlers and odd links stay text. */
import { expect, test } from "bun:test";
import { parseInline, parseMarkdown } from "../../src/webchat/client/markdown.ts";

test("blocks: paragraphs, headings, lists, quotes, rules and fenced code (an unclosed fence runs to the end)", () => {
  expect(
    parseMarkdown("# Title\n\nOne\ntwo\n\n- a\n- b\n\n1. x\n2. y\n\n> said\n\n---\n\n```ts\nconst a = 1;\n```\n```\nstill open"),
  ).toEqual([
    { type: "heading", level: 1, children: [{ type: "text", text: "Title" }] },
    { type: "paragraph", children: [{ type: "text", text: "One" }, { type: "break" }, { type: "text", text: "two" }] },
    { type: "list", ordered: false, items: [[{ type: "text", text: "a" }], [{ type: "text", text: "b" }]] },
    { type: "list", ordered: true, items: [[{ type: "text", text: "x" }], [{ type: "text", text: "y" }]] },
    { type: "quote", children: [{ type: "paragraph", children: [{ type: "text", text: "said" }] }] },
    { type: "rule" },
    { type: "code", lang: "ts", text: "const a = 1;" },
    { type: "code", lang: "", text: "still open" },
  ]);
});

test("inline: code is literal, bold and italic nest, underscores inside words stay", () => {
  expect(parseInline("**bold _it_** and `a **b**` and snake_case_name and __init__")).toEqual([
    {
      type: "strong",
      children: [
        { type: "text", text: "bold " },
        { type: "em", children: [{ type: "text", text: "it" }] },
      ],
    },
    { type: "text", text: " and " },
    { type: "code", text: "a **b**" },
    { type: "text", text: " and snake_case_name and " },
    { type: "strong", children: [{ type: "text", text: "init" }] },
  ]);
});

test("HTML and script in a reply are text, never structure", () => {
  const hostile = `<img src=x onerror="alert(1)"><script>alert(2)</script>`;
  expect(parseMarkdown(hostile)).toEqual([{ type: "paragraph", children: [{ type: "text", text: hostile }] }]);
  expect(parseMarkdown(`\`\`\`html\n${hostile}\n\`\`\``)).toEqual([{ type: "code", lang: "html", text: hostile }]);
});

test("links: http(s) only; javascript:, data: and relative targets are shown as their text", () => {
  expect(parseInline("[ok](https://example.com/a?b=1)")).toEqual([
    { type: "link", href: "https://example.com/a?b=1", children: [{ type: "text", text: "ok" }] },
  ]);
  for (const target of ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<b>x</b>", "/local", "vbscript:x"])
    expect(parseInline(`[click](${target})`)).toEqual([{ type: "text", text: "click" }]);
});

test("long replies full of unmatched markers parse in linear time", () => {
  const text = "*a _b `c [d ".repeat(20_000);
  const started = performance.now();
  const blocks = parseMarkdown(text);
  expect(performance.now() - started).toBeLessThan(2_000);
  expect(blocks).toHaveLength(1);
});
