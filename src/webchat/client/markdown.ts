/**
 * The small part of Markdown the chat page renders (paragraphs, headings, lists, quotes, code blocks, inline code,
 * bold, italic, links), parsed into a tree of plain data. Nothing here is HTML: renderMarkdown.ts turns the tree into
 * DOM nodes with text nodes only, so a model's `<script>` stays text.
 */

export type Inline =
  | { type: "text"; text: string }
  | { type: "code"; text: string }
  | { type: "strong" | "em"; children: Inline[] }
  | { type: "link"; href: string; children: Inline[] }
  | { type: "break" };

export type Block =
  | { type: "paragraph"; children: Inline[] }
  | { type: "heading"; level: number; children: Inline[] }
  | { type: "code"; lang: string; text: string }
  | { type: "list"; ordered: boolean; items: Inline[][] }
  | { type: "quote"; children: Block[] }
  | { type: "rule" };

const fence = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const heading = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const bullet = /^ {0,3}[-*+]\s+(.*)$/;
const numbered = /^ {0,3}\d{1,9}[.)]\s+(.*)$/;
const quote = /^ {0,3}>\s?(.*)$/;
const rule = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;

/** Parses Markdown text; an unclosed code fence (a reply still streaming) runs to the end of the text. */
export function parseMarkdown(text: string): Block[] {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const blocks: Block[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "") {
      i++;
      continue;
    }
    const open = fence.exec(line);
    if (open) {
      const marker = open[1]!;
      const body: string[] = [];
      i++;
      while (i < lines.length && !lines[i]!.trimStart().startsWith(marker)) body.push(lines[i++]!);
      i++; // the closing fence
      blocks.push({ type: "code", lang: open[2] ?? "", text: body.join("\n") });
      continue;
    }
    const title = heading.exec(line);
    if (title) {
      blocks.push({ type: "heading", level: title[1]!.length, children: parseInline(title[2]!) });
      i++;
      continue;
    }
    if (rule.test(line)) {
      blocks.push({ type: "rule" });
      i++;
      continue;
    }
    if (quote.test(line)) {
      const quoted: string[] = [];
      while (i < lines.length && quote.test(lines[i]!)) quoted.push(quote.exec(lines[i++]!)![1]!);
      blocks.push({ type: "quote", children: parseMarkdown(quoted.join("\n")) });
      continue;
    }
    const item = bullet.test(line) ? bullet : numbered.test(line) ? numbered : undefined;
    if (item) {
      const items: Inline[][] = [];
      while (i < lines.length && item.test(lines[i]!)) items.push(parseInline(item.exec(lines[i++]!)![1]!));
      blocks.push({ type: "list", ordered: item === numbered, items });
      continue;
    }
    const paragraph: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "" && !startsBlock(lines[i]!)) paragraph.push(lines[i++]!);
    blocks.push({ type: "paragraph", children: parseInline(paragraph.join("\n")) });
  }
  return blocks;
}

function startsBlock(line: string): boolean {
  return fence.test(line) || heading.test(line) || rule.test(line) || quote.test(line) || bullet.test(line) || numbered.test(line);
}

// Sticky patterns tried at one position; spans are bounded so text full of unmatched `*` stays linear per render.
const codeSpan = /(`+)([^`][\s\S]{0,2000}?)\1(?!`)/y;
const linkSpan = /\[([^\]\n]{1,500})\]\(((?:[^()\s]|\([^()\s]{0,200}\)){1,2000})\)/y;
// `_` marks emphasis only at word edges (`snake_case` and `__dunder__` names inside words stay as they are).
const strongSpan = /\*\*(?=\S)([\s\S]{0,2000}?\S)\*\*|__(?=\S)([\s\S]{0,2000}?\S)__(?!\w)/y;
const emSpan = /\*(?=\S)([\s\S]{0,2000}?\S)\*(?![\w*])|_(?=\S)([\s\S]{0,2000}?\S)_(?!\w)/y;
const special = /[`[*_]/g;

/** Inline code first (its content is literal), then links, bold, italic; line breaks inside a paragraph are kept. */
export function parseInline(text: string): Inline[] {
  const out: Inline[] = [];
  let plain = "";
  const flush = () => {
    if (plain === "") return;
    const parts = plain.split("\n");
    parts.forEach((part, index) => {
      if (index > 0) out.push({ type: "break" });
      if (part !== "") out.push({ type: "text", text: part });
    });
    plain = "";
  };
  const at = (pattern: RegExp, index: number) => {
    pattern.lastIndex = index;
    return pattern.exec(text);
  };
  let i = 0;
  while (i < text.length) {
    // Plain text up to the next character that could open a span.
    special.lastIndex = i;
    const next = special.exec(text)?.index ?? text.length;
    if (next > i) {
      plain += text.slice(i, next);
      i = next;
      continue;
    }
    const code = at(codeSpan, i);
    if (code) {
      flush();
      out.push({ type: "code", text: code[2]!.replace(/^ (.*) $/, "$1") });
      i += code[0].length;
      continue;
    }
    const link = at(linkSpan, i);
    if (link) {
      flush();
      const href = safeHref(link[2]!);
      // A link to anything but http(s) (javascript:, data:, ...) is shown as its text only.
      if (href) out.push({ type: "link", href, children: parseInline(link[1]!) });
      else out.push(...parseInline(link[1]!));
      i += link[0].length;
      continue;
    }
    const inWord = text[i] === "_" && /\w/.test(text[i - 1] ?? "");
    const strong = inWord ? null : at(strongSpan, i);
    if (strong) {
      flush();
      out.push({ type: "strong", children: parseInline(strong[1] ?? strong[2]!) });
      i += strong[0].length;
      continue;
    }
    const em = inWord ? null : at(emSpan, i);
    if (em) {
      flush();
      out.push({ type: "em", children: parseInline(em[1] ?? em[2]!) });
      i += em[0].length;
      continue;
    }
    plain += text[i];
    i++;
  }
  flush();
  return out;
}

/** The URL when it is an absolute http(s) one, else undefined. */
export function safeHref(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : undefined;
  } catch {
    return undefined;
  }
}
