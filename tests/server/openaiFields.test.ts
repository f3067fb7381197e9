/**
 * OpenAI fields answered exactly, in raw HTTP: logprobs (chat and legacy, stream and not), n, echo, suffix, logit_bias,
 * embeddings in base64 and from token ids, llama-server's extensions (grammar, json_schema, n_probs, cache_prompt,
 * dry_*), and fields that cannot be honoured: a 400 naming them, never a silent drop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bodyOf, postJson, readChunks, startTestServer, type TestServer } from "../support/testServer.ts";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    demo: { source: "synthetic:demo", context: 512, parallel: 2 },
    fim: { source: "synthetic:tiny-fim", context: 256, parallel: 1 },
  });
});
afterAll(() => server?.[Symbol.asyncDispose]());

const chat = (body: Record<string, unknown>) =>
  postJson(`${server.url}/v1/chat/completions`, {
    model: "demo",
    messages: [{ role: "user", content: "Tell a story" }],
    temperature: 0,
    ...body,
  });
const complete = (body: Record<string, unknown>) =>
  postJson(`${server.url}/v1/completions`, { model: "demo", prompt: "Once upon a", temperature: 0, ...body });

/** The JSON chunks of an SSE body, [DONE] left out. */
async function chunksOf(response: Response): Promise<any[]> {
  expect(response.status).toBe(200);
  const { text } = await readChunks(response);
  return text
    .split("\n\n")
    .filter((e) => e.startsWith("data: {"))
    .map((e) => JSON.parse(e.slice(6)));
}

async function problemOf(response: Response | Promise<Response>): Promise<{ status: number; message: string; param?: string }> {
  const r = await response;
  const { error } = (await r.json()) as { error: { message: string; param?: string } };
  return { status: r.status, ...error };
}

const utf8 = (bytes: number[]) => new TextDecoder().decode(new Uint8Array(bytes));

describe("chat logprobs", () => {
  test("non-stream: OpenAI's exact shape; the tokens spell the message; top alternatives sorted, the greedy one first", async () => {
    const body = await bodyOf(chat({ max_tokens: 8, logprobs: true, top_logprobs: 3 }));
    const { logprobs, message } = body.choices[0];
    expect(Object.keys(logprobs).sort()).toEqual(["content", "refusal"]);
    expect(logprobs.refusal).toBeNull();
    expect(logprobs.content).toHaveLength(8);
    expect(logprobs.content.map((c: { token: string }) => c.token).join("")).toBe(message.content);
    for (const entry of logprobs.content) {
      expect(Object.keys(entry).sort()).toEqual(["bytes", "logprob", "token", "top_logprobs"]);
      expect(utf8(entry.bytes)).toBe(entry.token);
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(entry.top_logprobs).toHaveLength(3);
      for (const alt of entry.top_logprobs) expect(Object.keys(alt).sort()).toEqual(["bytes", "logprob", "token"]);
      expect(entry.top_logprobs[0]).toEqual({ token: entry.token, logprob: entry.logprob, bytes: entry.bytes });
      const lps = entry.top_logprobs.map((a: { logprob: number }) => a.logprob);
      expect(lps).toEqual([...lps].sort((a, b) => b - a));
    }
    expect((await bodyOf(chat({ max_tokens: 2 }))).choices[0].logprobs).toBeNull();
    const none = await bodyOf(chat({ max_tokens: 2, logprobs: true }));
    expect(none.choices[0].logprobs.content[0].top_logprobs).toEqual([]);
  });

  test("stream: every text chunk carries the logprobs of its tokens; role and finish chunks carry null", async () => {
    const chunks = await chunksOf(await chat({ max_tokens: 6, stream: true, logprobs: true, top_logprobs: 1 }));
    const [role, ...rest] = chunks;
    const finish = rest.pop();
    expect(role.choices[0]).toEqual({ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null });
    expect(finish.choices[0]).toEqual({ index: 0, delta: {}, logprobs: null, finish_reason: "length" });
    expect(rest).toHaveLength(6); // one chunk per token
    for (const c of rest) {
      expect(c.choices[0].logprobs.refusal).toBeNull();
      expect(c.choices[0].logprobs.content.map((t: { token: string }) => t.token).join("")).toBe(c.choices[0].delta.content);
    }
    const whole = await bodyOf(chat({ max_tokens: 6, logprobs: true, top_logprobs: 1 }));
    expect(rest.flatMap((c) => c.choices[0].logprobs.content)).toEqual(whole.choices[0].logprobs.content);
  });

  test("top_logprobs is 0 to 20 and needs logprobs: true", async () => {
    const high = await problemOf(chat({ logprobs: true, top_logprobs: 21 }));
    expect(high).toMatchObject({ status: 400, param: "top_logprobs" });
    expect(high.message).toContain("between 0 and 20");
    expect(await problemOf(chat({ top_logprobs: 2 }))).toMatchObject({ status: 400, param: "top_logprobs" });
  });
});

describe("legacy completions", () => {
  test("logprobs (int): tokens, token_logprobs, top_logprobs with the sampled token, text_offset; stream and non-stream agree", async () => {
    const body = await bodyOf(complete({ max_tokens: 6, logprobs: 2 }));
    const { text, logprobs } = body.choices[0];
    expect(Object.keys(logprobs).sort()).toEqual(["text_offset", "token_logprobs", "tokens", "top_logprobs"]);
    expect(logprobs.tokens.join("")).toBe(text);
    expect(logprobs.token_logprobs).toHaveLength(6);
    let offset = 0;
    logprobs.tokens.forEach((token: string, i: number) => {
      expect(logprobs.text_offset[i]).toBe(offset);
      offset += token.length;
      const top = logprobs.top_logprobs[i];
      expect(Object.keys(top).length).toBeLessThanOrEqual(3);
      expect(top[token]).toBe(logprobs.token_logprobs[i]);
    });
    const chunks = await chunksOf(await complete({ max_tokens: 6, logprobs: 2, stream: true }));
    const streamed = chunks.filter((c) => c.choices[0].logprobs);
    expect(streamed.flatMap((c) => c.choices[0].logprobs.tokens)).toEqual(logprobs.tokens);
    expect(streamed.flatMap((c) => c.choices[0].logprobs.text_offset)).toEqual(logprobs.text_offset);
    expect(chunks.at(-1).choices[0]).toEqual({ index: 0, text: "", logprobs: null, finish_reason: "length" });
  });

  test("echo puts the prompt first, stream or not, also from token ids", async () => {
    const plain = (await bodyOf(complete({ max_tokens: 4 }))).choices[0].text;
    const echoed = await bodyOf(complete({ max_tokens: 4, echo: true }));
    expect(echoed.choices[0].text).toBe(`Once upon a${plain}`);
    const chunks = await chunksOf(await complete({ max_tokens: 4, echo: true, stream: true }));
    expect(chunks.map((c) => c.choices[0].text).join("")).toBe(`Once upon a${plain}`);
    expect(chunks[0].choices[0].text).toBe("Once upon a");
    const fromIds = await bodyOf(complete({ prompt: [1, 500, 501], max_tokens: 2, echo: true }));
    expect(fromIds.choices[0].text.length).toBeGreaterThan(0);
    expect(fromIds.usage.prompt_tokens).toBe(3);
  });

  test("echo with logprobs scores the prompt: its tokens come first, the first with null, each given the ones before", async () => {
    const generated = await bodyOf(complete({ max_tokens: 1, logprobs: 2 }));
    const next = generated.choices[0].logprobs;
    // Score the prompt followed by the token the model chose: its logprob must be the one reported when it was generated.
    const prompt = `Once upon a${generated.choices[0].text}`;
    const scored = await bodyOf(complete({ prompt, max_tokens: 0, echo: true, logprobs: 2 }));
    const { text, logprobs, finish_reason } = scored.choices[0];
    expect(text).toBe(prompt);
    expect(finish_reason).toBe("length");
    expect(scored.usage.completion_tokens).toBe(0);
    expect(logprobs.tokens).toHaveLength(scored.usage.prompt_tokens);
    expect(logprobs.token_logprobs[0]).toBeNull();
    expect(logprobs.top_logprobs[0]).toBeNull();
    expect(logprobs.tokens.at(-1)).toBe(next.tokens[0]);
    expect(logprobs.token_logprobs.at(-1)).toBeCloseTo(next.token_logprobs[0], 4);
    expect(Object.keys(logprobs.top_logprobs.at(-1))).toEqual(Object.keys(next.top_logprobs[0]));
    expect(logprobs.text_offset[0]).toBe(0);
    // With generated tokens too: they follow the prompt's, their offsets after the echoed prompt text.
    const both = await bodyOf(complete({ max_tokens: 3, echo: true, logprobs: 0 }));
    const lp = both.choices[0].logprobs;
    const promptTokens = both.usage.prompt_tokens;
    expect(lp.tokens).toHaveLength(promptTokens + 3);
    expect(lp.text_offset[promptTokens]).toBe("Once upon a".length);
    expect(lp.top_logprobs[promptTokens]).toEqual({ [lp.tokens[promptTokens]]: lp.token_logprobs[promptTokens] });
    // Every token lies at its text_offset in the choice's text (as evaluation harnesses find the continuation by it);
    // the space SentencePiece puts before the first word is in the token, not in the echoed prompt.
    const at = (token: string, offset: number) =>
      both.choices[0].text.startsWith(token, offset) || (offset === 0 && both.choices[0].text.startsWith(token.trimStart()));
    expect(lp.tokens.map((token: string, i: number) => at(token, lp.text_offset[i]))).toEqual(lp.tokens.map(() => true));
    // Streamed: the prompt's logprobs come with the echoed text.
    const streamed = await chunksOf(await complete({ max_tokens: 3, echo: true, logprobs: 0, stream: true }));
    expect(streamed[0].choices[0].logprobs.tokens).toEqual(lp.tokens.slice(0, promptTokens));
    expect(streamed.flatMap((c) => c.choices[0].logprobs?.token_logprobs ?? [])).toEqual(lp.token_logprobs);
    expect(streamed.flatMap((c) => c.choices[0].logprobs?.text_offset ?? [])).toEqual(lp.text_offset);
  });

  test("prompt as token ids, or lists of them: one choice each", async () => {
    const body = await bodyOf(
      complete({
        prompt: [
          [1, 500],
          [1, 501, 502],
        ],
        max_tokens: 2,
      }),
    );
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1]);
    expect(body.usage.prompt_tokens).toBe(5);
    expect(await problemOf(complete({ prompt: [1, 99999] }))).toMatchObject({ status: 400, param: "prompt" });
  });

  test("suffix: fill in the middle where the GGUF has the tokens, else a 400 naming suffix", async () => {
    const body = await bodyOf(complete({ model: "fim", prompt: "def add(a, b):", suffix: "    return c", max_tokens: 4 }));
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.usage.prompt_tokens).toBeGreaterThan(6);
    const refused = await problemOf(complete({ suffix: "the end" }));
    expect(refused).toMatchObject({ status: 400, param: "suffix" });
    expect(refused.message).toContain("fill in the middle");
  });

  test("best_of other than n is a 400 naming it", async () => {
    expect(await problemOf(complete({ best_of: 3 }))).toMatchObject({ status: 400, param: "best_of" });
    expect((await complete({ best_of: 1, max_tokens: 1 })).status).toBe(200);
  });
});

describe("n", () => {
  test("chat: n choices, each its own answer (seeded: seed, seed + 1); usage counts the prompt once", async () => {
    const body = await bodyOf(chat({ n: 2, max_tokens: 6, temperature: 1.2, seed: 3 }));
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1]);
    expect(body.choices[0].message.content).not.toBe(body.choices[1].message.content);
    const one = await bodyOf(chat({ max_tokens: 6, temperature: 1.2, seed: 3 }));
    expect(body.choices[0].message.content).toBe(one.choices[0].message.content);
    expect(body.usage.prompt_tokens).toBe(one.usage.prompt_tokens);
    expect(body.usage.completion_tokens).toBe(12);
  });

  test("chat stream: each choice has its role chunk, text and finish chunk; one usage chunk and one [DONE] at the end", async () => {
    const response = await chat({ n: 2, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
    const { text } = await readChunks(response);
    expect(text.match(/\[DONE\]/g)).toHaveLength(1);
    const chunks = text
      .split("\n\n")
      .filter((e) => e.startsWith("data: {"))
      .map((e) => JSON.parse(e.slice(6)));
    const usage = chunks.pop();
    expect(usage.choices).toEqual([]);
    expect(usage.usage.completion_tokens).toBe(10);
    for (const index of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0].index === index);
      expect(mine[0].choices[0].delta).toEqual({ role: "assistant", content: "" });
      expect(mine.at(-1).choices[0].finish_reason).toBe("length");
      expect(
        mine
          .slice(1, -1)
          .map((c) => c.choices[0].delta.content)
          .join("").length,
      ).toBeGreaterThan(0);
    }
  });

  test("legacy completions: n choices per prompt, indexed prompt by prompt", async () => {
    const body = await bodyOf(complete({ prompt: ["a", "b"], n: 2, max_tokens: 2 }));
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1, 2, 3]);
    expect(body.usage.completion_tokens).toBe(8);
  });

  test("more than the model's parallel sequences is a 400 that names n and the limit", async () => {
    const problem = await problemOf(chat({ n: 3 }));
    expect(problem).toMatchObject({ status: 400, param: "n" });
    expect(problem.message).toStartWith("n must be between 1 and 2");
    expect((await problemOf(chat({ n: 0 }))).message).toBe("n must be an integer between 1 and 128 (or null), got 0");
  });
});

describe("logit_bias", () => {
  test("+100 forces a token, -100 (or false) bans it, ids outside the vocabulary are a 400", async () => {
    const tokens = async (bias: Record<string, number | false>) =>
      (await bodyOf(complete({ max_tokens: 3, logprobs: 0, logit_bias: bias }))).choices[0].logprobs.tokens as string[];
    const forced = await tokens({ 600: 100 });
    expect(new Set(forced).size).toBe(1);
    const other = await tokens({ 601: 100 });
    expect(other[0]).not.toBe(forced[0]);
    // Both forced, one banned: the other one wins.
    expect(await tokens({ 600: -100, 601: 100 })).toEqual(other);
    expect(await tokens({ 600: 100, 601: false })).toEqual(forced);
    const problem = await problemOf(complete({ logit_bias: { 123456: 5 } }));
    expect(problem).toMatchObject({ status: 400, param: "logit_bias" });
    expect(problem.message).toContain("0 to 999");
    const range = await problemOf(complete({ logit_bias: { 5: 101 } }));
    expect(range).toMatchObject({ status: 400, param: "logit_bias" });
    expect(range.message).toBe('logit_bias["5"] must be a number between -100 and 100 (or false), got 101');
  });
});

describe("llama-server's extensions", () => {
  test("grammar (GBNF), top-level json_schema and response_format json_object with a schema constrain the output", async () => {
    const yes = await bodyOf(complete({ grammar: 'root ::= "yes" | "no"', max_tokens: 5 }));
    expect(["yes", "no"]).toContain(yes.choices[0].text);
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    for (const body of [{ json_schema: schema }, { response_format: { type: "json_object", schema } }]) {
      const reply = await bodyOf(chat({ ...body, max_tokens: 60 }));
      expect(typeof JSON.parse(reply.choices[0].message.content).ok).toBe("boolean");
    }
    expect(await problemOf(complete({ grammar: "root ::= nothing" }))).toMatchObject({ status: 400, param: "grammar" });
  });

  test("n_probs gives OpenAI-shaped logprobs; cache_prompt false evaluates the whole prompt", async () => {
    const body = await bodyOf(chat({ n_probs: 2, max_tokens: 2 }));
    expect(body.choices[0].logprobs.content[0].top_logprobs).toHaveLength(2); // as llama-server answers n_probs in chat
    const legacy = await bodyOf(complete({ n_probs: 2, max_tokens: 2 }));
    expect(legacy.choices[0].logprobs.top_logprobs[0]).toBeObject();
    await complete({ prompt: "a prompt that is cached", max_tokens: 1 });
    expect(
      (await bodyOf(complete({ prompt: "a prompt that is cached", max_tokens: 1 }))).usage.prompt_tokens_details.cached_tokens,
    ).toBeGreaterThan(0);
    expect(
      (await bodyOf(complete({ prompt: "a prompt that is cached", max_tokens: 1, cache_prompt: false }))).usage.prompt_tokens_details
        .cached_tokens,
    ).toBe(0);
  });

  test("dry_* and repeat_last_n are honoured: they change a looping greedy output", async () => {
    const text = async (body: Record<string, unknown>) => (await bodyOf(complete({ max_tokens: 60, ...body }))).choices[0].text;
    const plain = await text({});
    expect(await text({ dry_multiplier: 2, dry_allowed_length: 1 })).not.toBe(plain);
    expect(await text({ repeat_penalty: 1.5, repeat_last_n: 0 })).toBe(plain);
    expect(await text({ repeat_penalty: 1.5, repeat_last_n: 64 })).not.toBe(plain);
    expect((await complete({ typical_p: 0.5, max_tokens: 1 })).status).toBe(200); // ignored, listed in the README
  });
});

describe("fields that cannot be honoured are a 400 naming them", () => {
  test("image and audio parts", async () => {
    const content = [
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
    ];
    const problem = await problemOf(chat({ messages: [{ role: "user", content }] }));
    expect(problem).toMatchObject({ status: 400, param: "messages[0].content[1].type" });
    expect(problem.message).toContain('"image_url" is not supported');
    const audio = await problemOf(chat({ messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] }));
    expect(audio.param).toBe("messages[0].content[0].type");
    expect(await problemOf(chat({ modalities: ["text", "audio"] }))).toMatchObject({ status: 400, param: "modalities" });
    expect(await problemOf(chat({ web_search_options: {} }))).toMatchObject({ status: 400, param: "web_search_options" });
    // Text parts are joined.
    const text = [
      { type: "text", text: "Tell " },
      { type: "text", text: "a story" },
    ];
    const joined = await bodyOf(chat({ messages: [{ role: "user", content: text }], max_tokens: 3 }));
    const plain = await bodyOf(chat({ max_tokens: 3 }));
    expect(joined.choices[0].message.content).toBe(plain.choices[0].message.content);
  });

  test("range errors name the field and the range", async () => {
    expect((await problemOf(chat({ temperature: 3 }))).message).toBe("temperature must be a number between 0 and 2 (or null), got 3");
    expect((await problemOf(chat({ top_p: 2 }))).message).toBe("top_p must be a number between 0 and 1 (or null), got 2");
    expect((await problemOf(chat({ presence_penalty: -3 }))).message).toBe(
      "presence_penalty must be a number between -2 and 2 (or null), got -3",
    );
    expect((await problemOf(complete({ logprobs: 30 }))).message).toBe("logprobs must be an integer between 0 and 20 (or null), got 30");
    expect((await problemOf(chat({ max_tokens: 0 }))).message).toBe("max_tokens must be an integer >= 1 (or null), got 0");
    // Inside a nullable object, the field that is wrong, not "must be an object".
    expect(await problemOf(chat({ response_format: { type: "yaml" } }))).toMatchObject({
      param: "response_format.type",
      message: 'response_format.type must be "text", "json_object" or "json_schema", got "yaml"',
    });
    expect((await problemOf(chat({ stream_options: { include_usage: "yes" } }))).message).toBe(
      'stream_options.include_usage must be true or false, got "yes"',
    );
    expect((await problemOf(complete({ prompt: 5 }))).message).toStartWith(
      "prompt must be a string, a list of strings of 1 to 64 items, a list of integers >= 0 of at least 1 item or a list of lists",
    );
  });
});

describe("embeddings", () => {
  const embed = (body: Record<string, unknown>) => postJson(`${server.url}/v1/embeddings`, { model: "demo", ...body });

  test("base64 is the float32 vector, little-endian; floats otherwise; the same numbers", async () => {
    const floats = await bodyOf(embed({ input: "hello world" }));
    const base64 = await bodyOf(embed({ input: "hello world", encoding_format: "base64" }));
    expect(base64.data[0].embedding).toBeString();
    const bytes = Buffer.from(base64.data[0].embedding, "base64");
    const decoded = Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
    expect(decoded).toEqual(floats.data[0].embedding);
    expect(decoded).toHaveLength(64);
  });

  test("input as text, texts, token ids or lists of them; usage counts the tokens; dimensions must be the model's", async () => {
    const ids = await bodyOf(embed({ input: [1, 500, 501] }));
    expect(ids.data).toHaveLength(1);
    expect(ids.usage.prompt_tokens).toBe(3);
    const lists = await bodyOf(
      embed({
        input: [
          [1, 500],
          [1, 501, 502],
        ],
      }),
    );
    expect(lists.data.map((d: { index: number }) => d.index)).toEqual([0, 1]);
    expect(lists.usage).toEqual({ prompt_tokens: 5, total_tokens: 5 });
    expect((await embed({ input: "x", dimensions: 64 })).status).toBe(200);
    const problem = await problemOf(embed({ input: "x", dimensions: 32 }));
    expect(problem).toMatchObject({ status: 400, param: "dimensions" });
    expect(problem.message).toContain("64");
    expect(await problemOf(embed({ input: "" }))).toMatchObject({ status: 400, param: "input" });
    expect(await problemOf(embed({ input: "x", encoding_format: "int8" }))).toMatchObject({ status: 400, param: "encoding_format" });
  });
});
