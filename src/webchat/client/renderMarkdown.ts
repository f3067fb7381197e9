/**
 * Turns parsed Markdown into DOM nodes. Only elements this file names are made, text always goes in as text nodes, and
 * the one attribute taken from the reply is a link's href, which markdown.ts lets through only for http(s): no HTML a
 * model writes can become markup, an event handler or a script.
 */
import { type Block, type Inline, parseMarkdown } from "./markdown.ts";

/** Replaces `target`'s children with `text` rendered as Markdown. */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const fragment = document.createDocumentFragment();
  for (const block of parseMarkdown(text)) fragment.append(renderBlock(block));
  target.replaceChildren(fragment);
}

function renderBlock(block: Block): Node {
  switch (block.type) {
    case "paragraph":
      return element("p", block.children.map(renderInline));
    case "heading":
      // h1 and h2 would shout inside a chat bubble: the page's own titles are h1.
      return element(`h${Math.min(6, block.level + 2)}` as "h3", block.children.map(renderInline));
    case "code": {
      const code = element("code", [document.createTextNode(block.text)]);
      const pre = element("pre", [code]);
      if (block.lang) pre.dataset.lang = block.lang;
      return pre;
    }
    case "list":
      return element(
        block.ordered ? "ol" : "ul",
        block.items.map((item) => element("li", item.map(renderInline))),
      );
    case "quote":
      return element("blockquote", block.children.map(renderBlock));
    case "rule":
      return document.createElement("hr");
  }
}

function renderInline(inline: Inline): Node {
  switch (inline.type) {
    case "text":
      return document.createTextNode(inline.text);
    case "code":
      return element("code", [document.createTextNode(inline.text)]);
    case "strong":
    case "em":
      return element(inline.type, inline.children.map(renderInline));
    case "link": {
      const link = element("a", inline.children.map(renderInline));
      link.href = inline.href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      return link;
    }
    case "break":
      return document.createElement("br");
  }
}

function element<K extends keyof HTMLElementTagNameMap>(tag: K, children: Node[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.append(...children);
  return node;
}
