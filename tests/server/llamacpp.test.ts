/**
 * llama-server's native API (the llamacpp plugin) in raw HTTP, on the shared stories model and on models the GGUF writer
 * makes: /completion (stream and not, its exact shapes), token ids and mixed prompts, n_probs, grammars, logit_bias,
 * /tokenize and /detokenize round trips, /apply-template, /embedding, /props, /slots, llama-server's error shape.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  bodyOf,
  hasSharedModels,
  noteSharedModels,
  postJson,
  readChunks,
  startTestServer,
  storiesModel,
  type TestServer,
} from "../support/testServer.ts";
import { weatherParameters } from "../support/tools.ts";
import { waitFor } from "../support/waitFor.ts";

noteSharedModels("tests/server/llamacpp.test.ts");

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(
    {
      demo: { source: "synthetic:demo", context: 256, parallel: 2, defaults: { temperature: 0.5 } },
      bpe: { source: "synthetic:tiny-bpe", context: 256, parallel: 1 },
      tools: { source: "synthetic:tiny-tools", context: 2048, parallel: 1 },
      // One sequence and a queue of one: several prompts of one request must take turns, not queue.
      turns: { source: "synthetic:demo", context: 256, parallel: 1, max_queue: 1 },
      ...(hasSharedModels ? { stories: { source: storiesModel, context: 256, parallel: 2 } } : {}),
    },
    { top: { default_model: "demo" } },
  );
});
afterAll(() => server?.[Symbol.asyncDispose]());

const post = (path: string, body: unknown) => postJson(`${server.url}${path}`, body);
const completion = (model: string, body: Record<string, unknown>) =>
  bodyOf(post("/completion", { model, prompt: "Once upon a time", temperature: 0, n_predict: 8, ...body }));

/** The JSON events of an SSE body; llama-server's native stream has no [DONE] marker. */
async function eventsOf(response: Response): Promise<any[]> {
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toStartWith("text/event-stream");
  const { text } = await readChunks(response);
  expect(text.endsWith("\n\n")).toBe(true);
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((event) => {
      expect(event).toStartWith("data: {");
      return JSON.parse(event.slice(6));
    });
}

/** A llama-server error: `{error: {code, message, type}}` with the status as code. */
async function errorOf(response: Response | Promise<Response>, status: number, type: string) {
  const r = await response;
  const body = await bodyOf(r);
  expect({ status: r.status, type: body.error?.type }).toEqual({ status, type });
  expect(body.error.code).toBe(status);
  expect(body.error.message).toBeString();
  return body.error;
}

const finalKeys = [
  "index",
  "content",
  "tokens",
  "id_slot",
  "stop",
  "model",
  "tokens_predicted",
  "tokens_evaluated",
  "generation_settings",
  "prompt",
  "has_new_line",
  "truncated",
  "stop_type",
  "stopping_word",
  "tokens_cached",
  "timings",
];
const timingKeys = [
  "cache_n",
  "prompt_n",
  "prompt_ms",
  "prompt_per_token_ms",
  "prompt_per_second",
  "predicted_n",
  "predicted_ms",
  "predicted_per_token_ms",
  "predicted_per_second",
];
const models = hasSharedModels ? ["demo", "bpe", "stories"] : ["demo", "bpe"];

describe.each(models)("POST /completion on %s", (model) => {
  test("non-stream: llama-server's result, the same text and counts as /v1/completions; return_tokens round-trips", async () => {
    const result = await completion(model, { return_tokens: true, cache_prompt: false });
    expect(Object.keys(result)).toEqual(finalKeys);
    expect(Object.keys(result.timings)).toEqual(timingKeys);
    const openai = await bodyOf(
      post("/v1/completions", { model, prompt: "Once upon a time", temperature: 0, max_tokens: 8, cache_prompt: false }),
    );
    expect(result).toMatchObject({
      index: 0,
      content: openai.choices[0].text,
      stop: true,
      model,
      tokens_predicted: openai.usage.completion_tokens,
      tokens_evaluated: openai.usage.prompt_tokens,
      prompt: "Once upon a time",
      truncated: false,
      stop_type: "limit",
      stopping_word: "",
    });
    expect(result.tokens).toHaveLength(8);
    expect((await bodyOf(post("/detokenize", { model, tokens: result.tokens }))).content).toBe(result.content);
    expect(result.timings).toMatchObject({ cache_n: 0, prompt_n: openai.usage.prompt_tokens, predicted_n: 8 });
    expect(result.generation_settings).toMatchObject({ temperature: 0, n_predict: 8, max_tokens: 8, stream: false, n_probs: 0 });
    // Without return_tokens, tokens stay empty (llama-server's default).
    expect((await completion(model, {})).tokens).toEqual([]);
  });

  test("stream: one chunk per token in llama-server's partial shape, then the final result; the text is the non-stream one", async () => {
    const whole = await completion(model, {});
    const events = await eventsOf(
      await post("/completion", { model, prompt: "Once upon a time", temperature: 0, n_predict: 8, stream: true }),
    );
    const final = events.pop();
    expect(events).toHaveLength(8);
    events.forEach((chunk, i) => {
      expect(Object.keys(chunk)).toEqual(["index", "content", "tokens", "stop", "id_slot", "tokens_predicted", "tokens_evaluated"]);
      expect(chunk).toMatchObject({
        index: 0,
        stop: false,
        id_slot: -1,
        tokens_predicted: i + 1,
        tokens_evaluated: whole.tokens_evaluated,
      });
      expect(chunk.tokens).toHaveLength(1);
    });
    expect(events.map((c) => c.content).join("")).toBe(whole.content);
    expect(Object.keys(final)).toEqual(finalKeys);
    expect(final).toMatchObject({ content: "", tokens: [], stop: true, stop_type: "limit", tokens_predicted: 8 });
    expect(final.generation_settings.stream).toBe(true);
    // The tokens of the chunks are the text's tokens.
    const ids = events.flatMap((c) => c.tokens);
    expect((await bodyOf(post("/detokenize", { model, tokens: ids }))).content).toBe(whole.content);
  });

  test("prompts: token ids and a mixed list answer as the text; a list of texts is several prompts; n_cmpl several completions", async () => {
    const text = await completion(model, { cache_prompt: false });
    const { tokens } = await bodyOf(post("/tokenize", { model, content: "Once upon a time", add_special: true }));
    expect((await completion(model, { prompt: tokens, cache_prompt: false })).content).toBe(text.content);
    const [head, ...tail] = tokens as number[];
    const rest = (await bodyOf(post("/detokenize", { model, tokens: tail }))).content as string;
    const mixed = await completion(model, { prompt: [head, ...tail.slice(0, 2)], cache_prompt: false });
    expect(mixed.tokens_evaluated).toBe(3);
    expect(mixed.prompt).toBe((await bodyOf(post("/detokenize", { model, tokens: [head, ...tail.slice(0, 2)] }))).content);
    expect(rest.length).toBeGreaterThan(0);
    const several = await completion(model, { prompt: ["Once upon a time", "The dog"], n_predict: 3 });
    expect(several.map((r: { index: number; prompt: string }) => [r.index, r.prompt])).toEqual([
      [0, "Once upon a time"],
      [1, "The dog"],
    ]);
    expect(several[0].content).toBe((await completion(model, { n_predict: 3 })).content);
    const choices = post("/completion", { model, prompt: "Once", n_cmpl: 2, n_predict: 3, temperature: 1, seed: 7 });
    if (model === "bpe") {
      // One sequence: two completions side by side cannot be run, as llama-server refuses n_cmpl above its slots.
      expect((await errorOf(choices, 400, "invalid_request_error")).message).toStartWith("n_cmpl must be between 1 and 1");
    } else expect((await bodyOf(choices)).map((r: { index: number }) => r.index)).toEqual([0, 1]);
  });

  test("a stop word ends the text before it: stop_type word and the word", async () => {
    const whole = await completion(model, { n_predict: 12 });
    const word = (whole.content as string).slice(4, 7);
    const stopped = await completion(model, { n_predict: 12, stop: [word, ""] });
    expect(stopped.content).toBe((whole.content as string).slice(0, (whole.content as string).indexOf(word)));
    expect(stopped).toMatchObject({ stop_type: "word", stopping_word: word });
  });

  test("n_probs: completion_probabilities per token, top alternatives sorted; post_sampling_probs gives probabilities", async () => {
    const result = await completion(model, { n_probs: 3 });
    const probs = result.completion_probabilities;
    expect(probs).toHaveLength(result.tokens_predicted);
    expect(probs.map((p: { token: string }) => p.token).join("")).toBe(result.content);
    for (const p of probs) {
      expect(Object.keys(p)).toEqual(["id", "token", "bytes", "logprob", "top_logprobs"]);
      expect(p.top_logprobs).toHaveLength(3);
      expect(Object.keys(p.top_logprobs[0])).toEqual(["id", "token", "bytes", "logprob"]);
      // Greedy: the sampled token is the most likely one.
      expect(p.top_logprobs[0].id).toBe(p.id);
      const values = p.top_logprobs.map((a: { logprob: number }) => a.logprob);
      expect(values).toEqual([...values].sort((a, b) => b - a));
    }
    const sampled = await completion(model, { n_probs: 3, post_sampling_probs: true });
    const first = sampled.completion_probabilities[0];
    expect(Object.keys(first)).toEqual(["id", "token", "bytes", "prob", "top_probs"]);
    expect(first.prob).toBeCloseTo(Math.exp(probs[0].logprob), 6);
    expect(first.top_probs[1].prob).toBeCloseTo(Math.exp(probs[0].top_logprobs[1].logprob), 6);
    // Streamed, each chunk carries its token's probabilities.
    const events = await eventsOf(
      await post("/completion", { model, prompt: "Once upon a time", temperature: 0, n_predict: 3, stream: true, n_probs: 2 }),
    );
    events.pop();
    expect(events.map((e) => e.completion_probabilities[0].id)).toEqual(probs.slice(0, 3).map((p: { id: number }) => p.id));
  });

  test("grammar and json_schema constrain the text", async () => {
    const yesNo = await completion(model, { grammar: 'root ::= "yes" | "no"', n_predict: 10, temperature: 1, seed: 3 });
    expect(["yes", "no"]).toContain(yesNo.content);
    expect(yesNo.stop_type).toBe("eos");
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
    const json = await completion(model, { json_schema: schema, n_predict: 40 });
    expect(typeof JSON.parse(json.content).ok).toBe("boolean");
  });

  test("logit_bias: false bans a token, in the list and the object forms", async () => {
    const greedy = await completion(model, { n_predict: 1, return_tokens: true });
    const [first] = greedy.tokens;
    for (const logit_bias of [[[first, false]], { [String(first)]: false }]) {
      const banned = await completion(model, { n_predict: 1, return_tokens: true, logit_bias });
      expect(banned.tokens[0]).not.toBe(first);
      expect(banned.generation_settings.logit_bias).toEqual([{ bias: false, token: first }]);
    }
  });
});

describe("/completion: fields and errors", () => {
  test("unknown fields are ignored, null means absent; wrong types are 400s in llama-server's shape, naming the field", async () => {
    const ok = await completion("demo", { n_predict: 2, mirostat_tau: 5, samplers: ["top_k"], no_such_field: { x: 1 }, top_k: null });
    expect(ok.tokens_predicted).toBe(2);
    const error = await errorOf(post("/completion", { prompt: "x", temperature: "hot" }), 400, "invalid_request_error");
    expect(error.message).toStartWith("temperature must be a number");
    await errorOf(post("/completion", { prompt: [["a", 1.5]] }), 400, "invalid_request_error");
    await errorOf(post("/completion", { prompt: [{ prompt_string: "x", multimodal_data: ["AAAA"] }] }), 400, "invalid_request_error");
    await errorOf(post("/completion", { prompt: "x", logit_bias: [[1, "x"]] }), 400, "invalid_request_error");
    await errorOf(post("/completion", { prompt: "x", lora: [{ id: 0, scale: 1 }] }), 400, "invalid_request_error");
    await errorOf(post("/completion", { prompt: "x", id_slot: 9 }), 400, "invalid_request_error");
    await errorOf(post("/completion", { temperature: 0 }), 400, "invalid_request_error");
    await errorOf(post("/completion", '{"prompt": '), 400, "invalid_request_error");
  });

  test("a prompt too long: exceed_context_size_error with n_prompt_tokens and n_ctx, streamed or not", async () => {
    for (const stream of [false, true]) {
      const error = await errorOf(
        post("/completion", { prompt: "once upon a time ".repeat(60), stream }),
        400,
        "exceed_context_size_error",
      );
      expect(error.n_prompt_tokens).toBeGreaterThan(231);
      expect(error.n_ctx).toBe(256);
      // Too long by its characters alone, a prompt is refused before it is tokenized: there is no count to give.
      const uncounted = await errorOf(post("/completion", { prompt: "x".repeat(1_000_000), stream }), 400, "exceed_context_size_error");
      expect(uncounted.n_prompt_tokens).toBeUndefined();
    }
  });

  test("several prompts take turns on the model's sequences instead of filling its queue; over 256 completions is a 400", async () => {
    const prompt = Array.from({ length: 12 }, (_, i) => `Once upon a time ${i}`);
    const results = await bodyOf(post("/completion", { model: "turns", prompt, n_predict: 2, temperature: 0 }));
    expect(results.map((r: { index: number; prompt: string }) => [r.index, r.prompt])).toEqual(prompt.map((p, i) => [i, p]));
    const events = await eventsOf(await post("/completion", { model: "turns", prompt, n_predict: 2, temperature: 0, stream: true }));
    const finals = events.filter((e) => e.stop);
    expect(finals.map((e) => e.index).sort((a, b) => a - b)).toEqual(prompt.map((_, i) => i));
    for (const final of finals) expect(final.content).toBe("");
    const error = await errorOf(post("/completion", { model: "turns", prompt: Array(257).fill("x") }), 400, "invalid_request_error");
    expect(error.message).toContain("at most 256 completions");
  });

  test("the default model serves requests that name none; an unknown name is a 404, not the default", async () => {
    expect((await bodyOf(post("/completion", { prompt: "hi", n_predict: 1 }))).model).toBe("demo");
    expect((await bodyOf(post("/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 1 }))).model).toBe("demo");
    expect((await bodyOf(post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 1 }))).model).toBe("demo");
    const error = await errorOf(post("/completion", { model: "gpt-4", prompt: "hi" }), 404, "not_found_error");
    expect(error.message).toContain('"gpt-4"');
    expect((await post("/v1/chat/completions", { model: "gpt-4", messages: [{ role: "user", content: "hi" }] })).status).toBe(404);
  });

  test("id_slot runs on that sequence; seeds repeat; response_fields picks and lifts fields", async () => {
    expect((await completion("demo", { id_slot: 1, n_predict: 1 })).id_slot).toBe(1);
    expect((await completion("demo", { id_slot: 0, n_predict: 1 })).id_slot).toBe(0);
    const seeded = () => completion("demo", { temperature: 1, seed: 42, n_predict: 6 });
    expect((await seeded()).content).toBe((await seeded()).content);
    const picked = await completion("demo", {
      response_fields: ["content", "timings/prompt_n", "generation_settings/n_predict", "nope/x"],
    });
    expect(Object.keys(picked)).toEqual(["content", "timings/prompt_n", "generation_settings/n_predict"]);
    expect(picked["generation_settings/n_predict"]).toBe(8);
  });

  test("n_indent ends at the first line indented less (cut), t_max_predict_ms at the first new line after the time", async () => {
    const indented = await completion("demo", { grammar: 'root ::= "  a\\n  b\\nc\\n  d"', n_predict: 30, n_indent: 2 });
    expect(indented).toMatchObject({ content: "  a\n  b\n", stop_type: "limit", has_new_line: true });
    // 50 tokens before the first new line take well over a millisecond, so the rule fires there.
    const timed = await completion("demo", { grammar: 'root ::= "x"{50} "\\n" "y"{50} "\\n"', n_predict: 150, t_max_predict_ms: 1 });
    expect(timed).toMatchObject({ content: `${"x".repeat(50)}\n`, stop_type: "limit" });
    const events = await eventsOf(
      await post("/completion", {
        model: "demo",
        prompt: "x",
        stream: true,
        grammar: 'root ::= "  a\\n  b\\nc\\n  d"',
        n_predict: 30,
        n_indent: 2,
      }),
    );
    expect(events.pop().stop_type).toBe("limit");
    expect(events.map((e) => e.content).join("")).toStartWith("  a\n  b\n");
  });
});

describe("/tokenize and /detokenize", () => {
  test.each(models)("%s: tokens round-trip through /detokenize; pieces join to the same text; add_special adds BOS", async (model) => {
    const content = "Hello world, héllo!";
    const { tokens } = await bodyOf(post("/tokenize", { model, content }));
    expect(tokens.every((t: unknown) => Number.isInteger(t))).toBe(true);
    const back = (await bodyOf(post("/detokenize", { model, tokens }))).content;
    // SentencePiece vocabularies write the space they add in front of a text; byte-level BPE ones give it back exactly.
    expect(back).toBe(model === "bpe" ? content : ` ${content}`);
    const pieces = (await bodyOf(post("/tokenize", { model, content, with_pieces: true }))).tokens;
    expect(pieces.map((p: { id: number }) => p.id)).toEqual(tokens);
    const bytes = pieces.flatMap((p: { piece: string | number[] }) =>
      typeof p.piece === "string" ? [...new TextEncoder().encode(p.piece)] : p.piece,
    );
    expect(new TextDecoder().decode(new Uint8Array(bytes))).toBe(back);
    const special = (await bodyOf(post("/tokenize", { model, content, add_special: true }))).tokens;
    if (model !== "bpe") expect(special).toEqual([1, ...tokens]);
  });

  test("special token texts are parsed unless parse_special is false; a byte-fallback piece is its bytes; absent fields answer empty", async () => {
    const parsed = (await bodyOf(post("/tokenize", { model: "demo", content: "<s>", with_pieces: true }))).tokens;
    expect(parsed).toEqual([{ id: 1, piece: "<s>" }]);
    const plain = (await bodyOf(post("/tokenize", { model: "demo", content: "<s>", parse_special: false }))).tokens;
    expect(plain.length).toBeGreaterThan(1);
    expect(plain).not.toContain(1);
    // llama-server's README example: "á" on a vocabulary without it is two byte tokens, each piece a list of one byte.
    const bytes = (await bodyOf(post("/tokenize", { model: "demo", content: "á", with_pieces: true }))).tokens;
    expect(bytes.slice(-2).map((t: { piece: unknown }) => t.piece)).toEqual([[195], [161]]);
    expect(await bodyOf(post("/tokenize", { model: "demo" }))).toEqual({ tokens: [] });
    expect(await bodyOf(post("/detokenize", { model: "demo" }))).toEqual({ content: "" });
    const mixed = (await bodyOf(post("/tokenize", { model: "demo", content: [1, "hi"] }))).tokens;
    expect(mixed[0]).toBe(1);
    await errorOf(post("/detokenize", { model: "demo", tokens: [999999] }), 400, "invalid_request_error");
  });

  test("long lists: each special token written out (BOS and EOS alternating); a content list holds at most 1,024 texts", async () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => (i % 2 === 0 ? 1 : 2));
    expect((await bodyOf(post("/detokenize", { model: "demo", tokens: ids }))).content).toBe("<s></s>".repeat(5_000));
    const pieces = (await bodyOf(post("/tokenize", { model: "demo", content: ids, with_pieces: true }))).tokens;
    expect(pieces.slice(0, 3)).toEqual([
      { id: 1, piece: "<s>" },
      { id: 2, piece: "</s>" },
      { id: 1, piece: "<s>" },
    ]);
    const texts = Array(1024).fill("hi");
    const { tokens } = await bodyOf(post("/tokenize", { model: "demo", content: texts }));
    expect(tokens.length).toBeGreaterThanOrEqual(1024);
    const error = await errorOf(post("/tokenize", { model: "demo", content: [...texts, 5, "hi"] }), 400, "invalid_request_error");
    expect(error.message).toContain("at most 1024 texts");
  });
});

describe("/apply-template and /chat/completions/input_tokens", () => {
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: [{ type: "text", text: "Tell me a story" }] },
  ];
  test.each(models)("%s: input_tokens is the chat route's prompt count, with and without /v1", async (model) => {
    const counted = await bodyOf(post("/chat/completions/input_tokens", { model, messages }));
    expect(counted).toEqual({ input_tokens: counted.input_tokens, object: "response.input_tokens" });
    for (const path of ["/v1/chat/completions", "/chat/completions"]) {
      const chat = await bodyOf(post(path, { model, messages, max_tokens: 1, cache_prompt: false }));
      expect(chat.usage.prompt_tokens).toBe(counted.input_tokens);
    }
    const { prompt } = await bodyOf(post("/apply-template", { model, messages }));
    expect(prompt).toContain("Be brief.");
    expect(prompt).toContain("Tell me a story");
  });

  test("the template's text tokenizes (special tokens parsed) to the chat route's prompt tokens on the writer's BPE model", async () => {
    const { prompt } = await bodyOf(post("/apply-template", { model: "bpe", messages }));
    const { tokens } = await bodyOf(post("/tokenize", { model: "bpe", content: prompt }));
    const chat = await bodyOf(post("/chat/completions", { model: "bpe", messages, max_tokens: 1, cache_prompt: false }));
    expect(tokens).toHaveLength(chat.usage.prompt_tokens);
  });

  describe("with tools, as /chat/completions reads them", () => {
    const tools = [
      { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: weatherParameters } },
    ];
    const ask = [{ role: "user", content: "What is the weather in Paris?" }];
    const count = async (body: object) => (await bodyOf(post("/chat/completions/input_tokens", { model: "tools", ...body }))).input_tokens;
    const chatPromptTokens = async (body: object) =>
      (await bodyOf(post("/chat/completions", { model: "tools", max_tokens: 1, cache_prompt: false, ...body }))).usage.prompt_tokens;

    test("tools are documented in the template's text and counted as the chat route counts them; tool_choice none leaves them out", async () => {
      const withTools = await count({ messages: ask, tools });
      expect(withTools).toBe(await chatPromptTokens({ messages: ask, tools }));
      expect(withTools).toBeGreaterThan(await count({ messages: ask }));
      const { prompt } = await bodyOf(post("/apply-template", { model: "tools", messages: ask, tools }));
      expect(prompt).toContain("get_weather");
      expect(prompt).toContain("Weather in a city");
      const none = { messages: ask, tools, tool_choice: "none" };
      expect((await bodyOf(post("/apply-template", { model: "tools", ...none }))).prompt).not.toContain("get_weather");
      expect(await count(none)).toBe(await count({ messages: ask }));
      expect(await count(none)).toBe(await chatPromptTokens(none));
      // A named tool is forced, and documented with the others, as the chat route does.
      const named = { messages: ask, tools, tool_choice: { type: "function", function: { name: "get_weather" } } };
      expect(await count(named)).toBe(withTools);
    });

    test("an assistant's call and its result render in the template, counted as the chat route counts them", async () => {
      const messages = [
        ...ask,
        {
          role: "assistant",
          tool_calls: [{ id: "c1", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome","unit":"c"}' } }],
        },
        { role: "tool", tool_call_id: "c1", content: '{"temperature": 17}' },
      ];
      const { prompt } = await bodyOf(post("/apply-template", { model: "tools", messages, tools }));
      expect(prompt).toContain("Rome");
      expect(prompt).toContain("17");
      expect(await count({ messages, tools })).toBe(await chatPromptTokens({ messages, tools }));
    });

    test("what the chat route refuses is a 400 here too", async () => {
      const refused = [
        { messages: [...ask, { role: "tool", tool_call_id: "nobody", content: "x" }] },
        { messages: [...ask, { role: "assistant", tool_calls: [{ id: "c1", function: { name: "get_weather", arguments: "{" } }] }] },
        { messages: ask, tools: [{ type: "function", function: { name: "f", parameters: { type: "object", not: {} } } }] },
        { messages: ask, tools: [{ type: "web_search" }] },
        { messages: ask, tool_choice: { type: "function", function: { name: "get_time" } }, tools },
      ];
      const fieldsNamed = [
        "messages",
        "messages[1].tool_calls[0].function.arguments",
        "tools[0].function.parameters.not",
        "tools[0].type",
        "tool_choice",
      ];
      for (const [index, body] of refused.entries()) {
        const error = await errorOf(post("/apply-template", { model: "tools", ...body }), 400, "invalid_request_error");
        expect(error.message).toContain(fieldsNamed[index]!);
      }
    });
  });

  test("non-text parts are a 400", async () => {
    await errorOf(
      post("/apply-template", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }),
      400,
      "invalid_request_error",
    );
  });
});

describe("/embedding and /embeddings", () => {
  test("llama-server's shape: one entry per input with its vector in a list; embd_normalize chooses the norm", async () => {
    for (const path of ["/embedding", "/embeddings"]) {
      const [one] = await bodyOf(post(path, { content: "hello" }));
      expect(Object.keys(one)).toEqual(["index", "embedding"]);
      expect(one.embedding).toHaveLength(1);
      const vector = one.embedding[0] as number[];
      expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
      const openai = await bodyOf(post("/v1/embeddings", { input: "hello" }));
      for (const [i, x] of (openai.data[0].embedding as number[]).entries()) expect(x).toBeCloseTo(vector[i]!, 6);
    }
    const two = await bodyOf(post("/embeddings", { input: ["a", "b"] }));
    expect(two.map((e: { index: number }) => e.index)).toEqual([0, 1]);
    const norm = async (embd_normalize: number) =>
      (await bodyOf(post("/embedding", { content: "hello", embd_normalize })))[0].embedding[0] as number[];
    expect(Math.max(...(await norm(0)).map(Math.abs))).toBeCloseTo(32760, 1);
    expect((await norm(1)).reduce((sum, x) => sum + Math.abs(x), 0)).toBeCloseTo(1, 5);
    const raw = await norm(-1);
    const unit = await norm(2);
    const length = Math.hypot(...raw);
    for (const [i, x] of raw.entries()) expect(x / length).toBeCloseTo(unit[i]!, 5);
    await errorOf(post("/embedding", {}), 400, "invalid_request_error");
  });
});

describe("/props, /slots, /models, /health", () => {
  test("/props describes the default model (or ?model=): settings with models.yaml's defaults, slots, context, file, build", async () => {
    const props = await bodyOf(fetch(`${server.url}/props`));
    expect(props).toMatchObject({ total_slots: 2, model_alias: "demo", model_ftype: "Q8_0", modalities: { vision: false } });
    expect(props.default_generation_settings.n_ctx).toBe(256);
    expect(props.default_generation_settings.params).toMatchObject({ temperature: 0.5, top_k: 40, n_predict: -1 });
    expect(props.model_path).toMatch(/^synthetic-demo-[0-9a-f]+\.gguf$/);
    const chat = await bodyOf(post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 1 }));
    expect(props.build_info).toBe(chat.system_fingerprint);
    const bpe = await bodyOf(fetch(`${server.url}/props?model=bpe`));
    expect(bpe).toMatchObject({ total_slots: 1, model_alias: "bpe" });
    await errorOf(fetch(`${server.url}/props?model=nope`), 404, "not_found_error");
  });

  test("/slots: each sequence's context, whether it is busy and the tokens it holds", async () => {
    const slots = () => bodyOf(fetch(`${server.url}/slots?model=bpe`));
    await post("/completion", { model: "bpe", prompt: "Once upon a time", n_predict: 4, temperature: 0 }).then((r) => r.text());
    const [idle] = await slots();
    expect(idle).toMatchObject({ id: 0, n_ctx: 256, speculative: false, is_processing: false });
    expect(idle.tokens_cached).toBeGreaterThan(4);
    // A stream that has started holds its sequence: busy until it ends.
    const response = await post("/completion", { model: "bpe", prompt: "x", n_predict: 200, ignore_eos: true, stream: true });
    const reader = response.body!.getReader();
    await reader.read();
    expect((await slots())[0].is_processing).toBe(true);
    await errorOf(fetch(`${server.url}/slots?model=bpe&fail_on_no_slot=1`), 503, "unavailable_error");
    await reader.cancel();
    await waitFor(slots, (list) => list[0].is_processing === false);
  });

  test("/slots and /metrics read the same sequences: KV cache capacity is n_ctx over every slot", async () => {
    await completion("demo", { n_predict: 1 });
    const slots = await bodyOf(fetch(`${server.url}/slots?model=demo`));
    expect(slots.map((slot: { id: number }) => slot.id)).toEqual([0, 1]);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const gauge = (name: string) => Number(metrics.match(new RegExp(`^${name}\\{model="demo"\\} (\\S+)$`, "m"))?.[1]);
    expect(gauge("llamaport_kv_cache_tokens")).toBe(slots.reduce((sum: number, slot: { n_ctx: number }) => sum + slot.n_ctx, 0));
    expect(gauge("llamaport_kv_cache_tokens")).toBe(512);
    // Idle sequences keep their cache (tokens_cached) but running requests hold none of it.
    expect(slots.some((slot: { tokens_cached: number }) => slot.tokens_cached > 0)).toBe(true);
    expect(gauge("llamaport_kv_cache_used_tokens")).toBe(0);
  });

  test("/models and /chat/completions answer as the OpenAI routes; /health as llama-server's", async () => {
    expect(await bodyOf(fetch(`${server.url}/models`))).toEqual(await bodyOf(fetch(`${server.url}/v1/models`)));
    // Whatever serves /v1/models serves /models, the route chosen by header (`when`) included: Anthropic's for its SDK.
    const anthropic = { headers: { "anthropic-version": "2023-06-01" } };
    const models = await bodyOf(fetch(`${server.url}/models`, anthropic));
    expect(models).toEqual(await bodyOf(fetch(`${server.url}/v1/models`, anthropic)));
    expect(models.data[0].type).toBe("model");
    const chat = await bodyOf(post("/chat/completions", { model: "demo", messages: [{ role: "user", content: "hi" }], max_tokens: 2 }));
    expect(chat.object).toBe("chat.completion");
    expect(chat.usage.completion_tokens).toBe(2);
    expect(await bodyOf(fetch(`${server.url}/health`))).toEqual({ status: "ok" });
  });
});
