/**
 * Chat templates through the real server: a GGUF without one is served with ChatML (as llama-server does), wrapper
 * names in any letter case, Jinja templates inline or from a file (node-llama-cpp's JinjaTemplateChatWrapper), and
 * a broken template as a clear error, never a silent switch.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  bodyOf,
  hasSharedModels,
  noteSharedModels,
  postJson,
  randomLlama2Model,
  startTestServer,
  storiesModel,
  type TestServer,
  tempDir,
} from "../support/testServer.ts";

noteSharedModels("tests/engine/chatTemplates.test.ts");

/** Only the messages' text: the prompt is exactly what the user wrote. */
const plainJinja = "{% for message in messages %}{{ message.content }}{% endfor %}";
const files = tempDir("llamaport-templates-");
const templateFile = join(files.path, "plain.jinja");
writeFileSync(templateFile, plainJinja);

const base = { context: 256, parallel: 1 };
let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    auto: { ...base, source: "synthetic:demo" },
    chatml: { ...base, source: "synthetic:demo", chat_template: "chatml" },
    llama2: { ...base, source: "synthetic:demo", chat_template: "LLAMA2CHAT" },
    jinja: { ...base, source: "synthetic:demo", chat_template: plainJinja },
    jinjaFile: { ...base, source: "synthetic:demo", chat_template: templateFile },
    broken: { ...base, source: "synthetic:demo", chat_template: "{% for message in %}{{ message }}" },
    ggufJinja: { ...base, source: "synthetic:demo", chat_template: "jinjaTemplate" },
    ...(hasSharedModels
      ? {
          stories: { ...base, source: storiesModel },
          storiesChatml: { ...base, source: storiesModel, chat_template: "chatML" },
          storiesLlama2: { ...base, source: storiesModel, chat_template: "llama2Chat" },
          random: { ...base, source: randomLlama2Model },
          randomChatml: { ...base, source: randomLlama2Model, chat_template: "chatML" },
          randomGeneral: { ...base, source: randomLlama2Model, chat_template: "general" },
        }
      : {}),
  });
});
afterAll(async () => {
  await server?.[Symbol.asyncDispose]();
  files[Symbol.dispose]();
});

const messages = [{ role: "user", content: "Once upon a time" }];
const chat = (model: string) => postJson(`${server.url}/v1/chat/completions`, { model, messages, max_tokens: 8, temperature: 0 });
/** What the chat template made of the messages: its size, and the greedy answer that follows it. */
const rendered = async (model: string) => {
  const body = await bodyOf(chat(model));
  return { promptTokens: body.usage.prompt_tokens as number, text: body.choices[0].message.content as string };
};

test("a GGUF without a chat template is served with ChatML; names are matched in any letter case", async () => {
  const auto = await rendered("auto");
  expect(await rendered("chatml")).toEqual(auto);
  const llama2 = await rendered("llama2");
  expect(llama2.promptTokens).not.toBe(auto.promptTokens);
});

test.if(hasSharedModels)(
  "the shared models (no template in either) move to ChatML: stories260K from Llama 2 chat, llama-2-tiny-random from General",
  async () => {
    expect(await rendered("stories")).toEqual(await rendered("storiesChatml"));
    expect((await rendered("stories")).promptTokens).not.toBe((await rendered("storiesLlama2")).promptTokens);
    expect(await rendered("random")).toEqual(await rendered("randomChatml"));
    expect((await rendered("random")).promptTokens).not.toBe((await rendered("randomGeneral")).promptTokens);
  },
);

test("a Jinja template, inline or from a file, renders the prompt", async () => {
  const raw = await bodyOf(postJson(`${server.url}/v1/completions`, { model: "auto", prompt: "Once upon a time", max_tokens: 1 }));
  const inline = await rendered("jinja");
  // The template writes only the message's text: the prompt is the raw text's tokens and the beginning-of-sequence
  // token, less the leading-space token a raw SentencePiece prompt starts with (node-llama-cpp renders templates without it).
  expect(inline.promptTokens).toBe(raw.usage.prompt_tokens - 1);
  expect(inline.promptTokens).toBeLessThan((await rendered("auto")).promptTokens);
  expect(await rendered("jinjaFile")).toEqual(inline);
  const show = await bodyOf(postJson(`${server.url}/api/show`, { model: "jinjaFile" }));
  expect(show.template).toBe(plainJinja);
});

test("a template that cannot run is an error naming it when the model loads, not a switch to another template", async () => {
  const broken = await chat("broken");
  expect(broken.status).toBe(503);
  expect((await bodyOf(broken)).error.message).toContain(
    'model "broken" failed to load: the Jinja chat template (chat_template) cannot be used',
  );
  const missing = await chat("ggufJinja");
  expect(missing.status).toBe(503);
  expect((await bodyOf(missing)).error.message).toContain('chat_template "jinjaTemplate": the GGUF has no Jinja chat template');
});
