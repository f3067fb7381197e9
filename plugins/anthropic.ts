/** Anthropic protocol: /v1/messages (plain and streamed) and /v1/messages/count_tokens over the llamaport engine. */
import {
  type ChatMessage,
  definePlugin,
  frames,
  type GenerationSummary,
  LlamaportError,
  nullable,
  type Problem,
  randomId,
  route,
  type StaticDecode,
  sse,
  sseEvent,
  t,
  TEXT,
  template,
} from "llamaport";

// Blocks are checked by `flatten`, not by the schema: TypeBox would only say "expected union value" about the whole
// content, while a client needs to hear which block it sent that we cannot take.
const content = t.Union([t.String(), t.Array(t.Unknown())]);

const promptFields = {
  model: t.String({ minLength: 1 }),
  // "system" turns are not in Anthropic's public docs, but the official SDK's types allow them; they cost nothing here.
  messages: t.Array(t.Object({ role: t.Union([t.Literal("user"), t.Literal("assistant"), t.Literal("system")]), content }), {
    minItems: 1,
  }),
  system: nullable(content),
};

// Unknown fields (tools, thinking, service_tier, ...) pass: TypeBox objects allow extra properties, and clients send them.
const messagesBody = t.Object({
  ...promptFields,
  max_tokens: t.Integer({ minimum: 1 }),
  temperature: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_k: nullable(t.Integer({ minimum: 0 })),
  stop_sequences: nullable(t.Array(t.String({ minLength: 1 }))),
  stream: nullable(t.Boolean()),
  metadata: t.Optional(t.Unknown()),
});

const countTokensBody = t.Object(promptFields);

type PromptBody = StaticDecode<typeof countTokensBody>;

/** Text of a string or an array of text blocks; any other block is a 400 naming its field, e.g. `messages[1].content[0].type`. */
function flatten(value: string | unknown[], field: string): string {
  if (typeof value === "string") return value;
  const parts: string[] = [];
  value.forEach((block, index) => {
    const at = `${field}[${index}]`;
    const type = typeof block === "object" && block !== null ? (block as { type?: unknown }).type : undefined;
    if (typeof type !== "string")
      throw new LlamaportError("invalid_request", `${at}.type: expected a content block with a string "type"`, { param: `${at}.type` });
    if (type !== "text")
      throw new LlamaportError("invalid_request", `${at}.type: content block type "${type}" is not supported; only "text" blocks are`, {
        param: `${at}.type`,
      });
    const text = (block as { text?: unknown }).text;
    if (typeof text !== "string") throw new LlamaportError("invalid_request", `${at}.text: expected a string`, { param: `${at}.text` });
    parts.push(text);
  });
  // Separate blocks are separate passages (clients put reminders and the question in different blocks): keep them apart.
  return parts.join("\n\n");
}

function chatMessages(body: PromptBody): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = body.system === undefined ? "" : flatten(body.system, "system");
  if (system) messages.push({ role: "system", content: system });
  body.messages.forEach((m, i) => {
    messages.push({ role: m.role, content: flatten(m.content, `messages[${i}].content`) });
  });
  return messages;
}

function stopReason(summary: GenerationSummary): "end_turn" | "max_tokens" | "stop_sequence" {
  if (summary.finishReason === "length") return "max_tokens";
  return summary.stopSequence !== undefined ? "stop_sequence" : "end_turn";
}

/**
 * Anthropic counts cache reads apart from `input_tokens` (the whole prompt is input + cache_creation + cache_read), so
 * the cached part is taken out of input_tokens; clients that add the three get the real prompt size.
 */
function usage(summary: Pick<GenerationSummary, "promptTokens" | "cachedTokens">, outputTokens: number) {
  return {
    input_tokens: summary.promptTokens - summary.cachedTokens,
    output_tokens: outputTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: summary.cachedTokens,
  };
}

/**
 * Anthropic's error type for a status. Overload is answered 503 with Retry-After rather than Anthropic's 529: the host
 * owns statuses, and its clients retry on both.
 */
const errorTypes: Record<number, string> = { 404: "not_found_error", 413: "request_too_large", 500: "api_error", 503: "overloaded_error" };

const errorBody = (problem: Problem) => ({
  type: "error",
  error: { type: errorTypes[problem.status] ?? "invalid_request_error", message: problem.message },
});

export default definePlugin({
  name: "anthropic",
  version: "1.1.0",
  prefixes: ["/v1/messages"],
  fields: { maxTokens: "max_tokens", topP: "top_p", topK: "top_k", stop: "stop_sequences" },
  error: errorBody,
  streamError: (problem) => sseEvent("error", errorBody(problem)),
  routes: [
    route({
      method: "POST",
      path: "/v1/messages",
      body: messagesBody,
      async handler({ body, engine, signal }) {
        const id = randomId("msg_");
        const generation = engine.chat({
          model: body.model,
          messages: chatMessages(body),
          maxTokens: body.max_tokens,
          temperature: body.temperature,
          topP: body.top_p,
          topK: body.top_k,
          stop: body.stop_sequences,
          signal,
        });
        const message = { id, type: "message", role: "assistant", model: generation.model };
        if (!body.stream) {
          const { text, summary } = await generation.collect();
          return {
            ...message,
            content: [{ type: "text", text }],
            stop_reason: stopReason(summary),
            stop_sequence: summary.stopSequence ?? null,
            usage: usage(summary, summary.completionTokens),
          };
        }
        return sse(
          frames(generation, {
            start: (start) => [
              sseEvent("message_start", {
                type: "message_start",
                message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: usage(start, 0) },
              }),
              sseEvent("content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
              sseEvent("ping", { type: "ping" }),
            ],
            text: template(
              { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: TEXT } },
              { event: "content_block_delta" },
            ),
            done: (summary) => [
              sseEvent("content_block_stop", { type: "content_block_stop", index: 0 }),
              sseEvent("message_delta", {
                type: "message_delta",
                delta: { stop_reason: stopReason(summary), stop_sequence: summary.stopSequence ?? null },
                usage: usage(summary, summary.completionTokens),
              }),
              sseEvent("message_stop", { type: "message_stop" }),
            ],
          }),
        );
      },
    }),
    route({
      method: "POST",
      path: "/v1/messages/count_tokens",
      body: countTokensBody,
      async handler({ body, engine }) {
        // An approximation: the engine tokenizes plain text only, so the chat template's role markers and separators
        // (which the real prompt has) are not counted; a generation's usage reports the exact, templated size.
        const text = chatMessages(body)
          .map((m) => m.content)
          .join("\n\n");
        const tokens = await engine.tokenize(body.model, text);
        return { input_tokens: tokens.length };
      },
    }),
  ],
});
