/**
 * /infill as llama.vim calls it (its request fields, its warm-up request, its parsing), on the GGUF writer's
 * fill-in-the-middle model: llama-server's prompt layout, prompt reuse between keystrokes, and a clear error on a model
 * without fill-in-the-middle tokens.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { bodyOf, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    fim: { source: "synthetic:tiny-fim", context: 512, parallel: 1 },
    demo: { source: "synthetic:demo", context: 256, parallel: 1 },
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

/** The fields llama.vim (autoload/llama.vim, `llama#fim`) asks for and reads back. */
const responseFields = [
  "content",
  "timings/prompt_n",
  "timings/prompt_ms",
  "timings/prompt_per_token_ms",
  "timings/prompt_per_second",
  "timings/predicted_n",
  "timings/predicted_ms",
  "timings/predicted_per_token_ms",
  "timings/predicted_per_second",
  "truncated",
  "tokens_cached",
];

/**
 * A completion request as llama.vim builds it: the lines around the cursor as prefix and suffix, the current line up
 * to the cursor as `prompt`, its indentation as `n_indent`, ring-buffer chunks as `input_extra`; then its response
 * handling (a quick textual check before decoding, the content split into lines, trailing empty lines dropped).
 */
async function llamaVimFim(lines: string[], row: number, col: number, extra: { filename: string; text: string }[]) {
  const line = lines[row]!;
  const request = {
    id_slot: 0,
    input_prefix: `${lines.slice(Math.max(0, row - 256), row).join("\n")}\n`,
    input_suffix: `${line.slice(col)}\n${lines.slice(row + 1, row + 1 + 64).join("\n")}\n`,
    input_extra: extra,
    prompt: line.slice(0, col),
    n_predict: 16,
    stop: [],
    n_indent: /^\s*/.exec(line)![0].length,
    top_k: 40,
    top_p: 0.9,
    samplers: ["top_k", "top_p", "infill"],
    stream: false,
    cache_prompt: true,
    t_max_prompt_ms: 500,
    t_max_predict_ms: 1000,
    response_fields: responseFields,
    model: "fim",
  };
  const response = await postJson(`${server.url}/infill`, request);
  const raw = await response.text();
  return { status: response.status, raw, request };
}

const decode = (raw: string) => {
  // llama.vim: `if l:raw !~# '^\s*{' || l:raw !~# '\v"content"\s*:"'` skips the response.
  expect(raw).toMatch(/^\s*\{/);
  expect(raw).toMatch(/"content"\s*:"/);
  const response = JSON.parse(raw);
  const content = String(response.content ?? "").split("\n");
  while (content.length > 0 && content.at(-1) === "") content.pop();
  return { response, content };
};

const tokenCount = async (content: string) => (await bodyOf(postJson(`${server.url}/tokenize`, { model: "fim", content }))).tokens.length;

const buffer = ["def add(a, b):", "    total = a + b", "    return tot", "", "print(add(1, 2))"];
const ring = [
  { filename: "util.py", text: "def sub(a, b):\n    return a - b\n" },
  { filename: "main.py", text: "import util\n" },
];

test("llama.vim's request: 200 with exactly its response_fields, content it can split; the prompt laid out as llama-server's", async () => {
  const { status, raw, request } = await llamaVimFim(buffer, 2, 14, ring);
  expect(status).toBe(200);
  const { response, content } = decode(raw);
  expect(Object.keys(response)).toEqual(responseFields);
  expect(content.every((part) => typeof part === "string")).toBe(true);
  expect(response.truncated).toBe(false);
  // No cache yet: every prompt token was evaluated. [BOS] snippets PRE prefix+prompt SUF suffix MID, each text
  // tokenized on its own, the model having no repo / file-separator tokens.
  let expected = 1 + 3 + (await tokenCount(request.input_prefix + request.prompt)) + (await tokenCount(request.input_suffix));
  for (const chunk of ring) expected += (await tokenCount("\n\n--- snippet ---\n\n")) + (await tokenCount(chunk.text));
  expect(response["timings/prompt_n"]).toBe(expected);
  expect(response.tokens_cached).toBeGreaterThanOrEqual(expected);
  expect(response["timings/predicted_n"]).toBeGreaterThan(0);
});

test("the next keystroke reuses the cached prompt (cache_prompt, id_slot 0)", async () => {
  // Other ring-buffer chunks: the sequence holds nothing of this prompt beyond its first tokens.
  const first = decode((await llamaVimFim(buffer, 2, 13, ring.slice(1))).raw).response;
  const next = decode((await llamaVimFim(buffer, 2, 14, ring.slice(1))).raw).response;
  expect(next["timings/prompt_n"]).toBeLessThan(first["timings/prompt_n"] / 2);
});

test('llama.vim\'s ring-buffer warm-up (n_predict 0, response_fields [""]) answers {} at once', async () => {
  const response = await postJson(`${server.url}/infill`, {
    id_slot: 0,
    input_prefix: "",
    input_suffix: "",
    input_extra: ring,
    prompt: "",
    n_predict: 0,
    temperature: 0,
    samplers: [],
    stream: false,
    cache_prompt: true,
    t_max_prompt_ms: 1,
    t_max_predict_ms: 1,
    response_fields: [""],
    model: "fim",
  });
  expect(response.status).toBe(200);
  expect(await response.json()).toEqual({});
});

test("streamed infill; missing fields and a model without fill-in-the-middle tokens are errors in llama-server's shape", async () => {
  const stream = await postJson(`${server.url}/infill`, {
    model: "fim",
    input_prefix: "def f(",
    input_suffix: ")\n",
    n_predict: 4,
    stream: true,
  });
  const events = (await readChunks(stream)).text
    .trim()
    .split("\n\n")
    .map((e) => JSON.parse(e.slice(6)));
  expect(events.at(-1)).toMatchObject({ stop: true, tokens_predicted: 4 });
  expect(events.slice(0, -1)).toHaveLength(4);
  const missing = await postJson(`${server.url}/infill`, { model: "fim", input_suffix: "" });
  expect(missing.status).toBe(400);
  expect((await bodyOf(missing)).error).toMatchObject({ code: 400, type: "invalid_request_error" });
  const noFim = await postJson(`${server.url}/infill`, { model: "demo", input_prefix: "a", input_suffix: "b" });
  expect(noFim.status).toBe(501);
  const error = (await bodyOf(noFim)).error;
  expect(error).toMatchObject({ code: 501, type: "not_supported_error" });
  expect(error.message).toStartWith("Infill is not supported by this model");
});
