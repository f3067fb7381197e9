/**
 * Anthropic protocol: /v1/messages (plain and streamed), /v1/messages/count_tokens, and /v1/models for requests with
 * an `anthropic-version` header (the OpenAI plugin answers the rest) over the llamaport engine.
 */
import {
  type ChatMessage,
  definePlugin,
  type EngineFacade,
  type GenerateOptions,
  frames,
  type GenerationSummary,
  LlamaportError,
  type ModelInfo,
  nullable,
  type Problem,
  randomId,
  route,
  type StaticDecode,
  sse,
  type StreamFormat,
  sseEvent,
  t,
  TEXT,
  type ToolCall,
  type ToolChoice,
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

/** Client tools; server tools (`web_search_…`, `bash_…`) are refused by `clientTools`, naming `tools[i].type`. */
const tool = t.Object({
  type: t.Optional(t.String()),
  name: t.String(),
  description: t.Optional(t.String()),
  input_schema: t.Optional(t.Record(t.String(), t.Unknown())),
});
const toolChoice = t.Object({
  type: t.Union([t.Literal("auto"), t.Literal("any"), t.Literal("tool"), t.Literal("none")]),
  name: t.Optional(t.String()),
  disable_parallel_tool_use: t.Optional(t.Boolean()),
});

const outputFormat = t.Object({ type: t.Literal("json_schema"), schema: t.Record(t.String(), t.Unknown()) });

// Other fields pass unread: TypeBox objects allow extra properties. Those that do not change a local model's answer
// (metadata, service_tier, speed, inference_geo, cache_control, ...) are listed as ignored in the README.
const messagesBody = t.Object({
  ...promptFields,
  max_tokens: t.Integer({ minimum: 1 }),
  temperature: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  top_k: nullable(t.Integer({ minimum: 0 })),
  stop_sequences: nullable(t.Array(t.String({ minLength: 1 }))),
  stream: nullable(t.Boolean()),
  tools: nullable(t.Array(tool)),
  tool_choice: nullable(toolChoice),
  metadata: t.Optional(t.Unknown()),
  thinking: nullable(t.Object({ type: t.String() })),
  output_config: nullable(t.Object({ format: nullable(outputFormat), effort: nullable(t.String()) })),
  // The structured-outputs beta's name for output_config.format.
  output_format: nullable(outputFormat),
  container: t.Optional(t.Unknown()),
  mcp_servers: t.Optional(t.Unknown()),
  context_management: t.Optional(t.Unknown()),
});
type MessagesBody = StaticDecode<typeof messagesBody>;

const countTokensBody = t.Object({ ...promptFields, tools: nullable(t.Array(tool)), tool_choice: nullable(toolChoice) });

type PromptBody = StaticDecode<typeof countTokensBody>;

/** Blocks a text-only model cannot read. */
const mediaBlocks = new Set(["image", "document", "search_result", "container_upload"]);

type Block = { type: string; [key: string]: unknown };

/** The blocks of a content field, each with a string `type` (a 400 naming `…content[i].type` otherwise). */
function blocksOf(value: string | unknown[], field: string): Block[] {
  if (typeof value === "string") return [{ type: "text", text: value }];
  return value.map((block, index) => {
    const type = typeof block === "object" && block !== null ? (block as { type?: unknown }).type : undefined;
    if (typeof type !== "string")
      throw new LlamaportError("invalid_request", `${field}[${index}].type: expected a content block with a string "type"`, {
        param: `${field}[${index}].type`,
      });
    return block as Block;
  });
}

function refuseBlock(block: Block, at: string, allowed: string): never {
  const why = mediaBlocks.has(block.type)
    ? ": llamaport runs text-only models (no vision, no document reading), and an answer without it would mislead"
    : "";
  throw new LlamaportError("invalid_request", `${at}.type: content block type "${block.type}" is not supported${why}; only ${allowed}`, {
    param: `${at}.type`,
  });
}

function stringField(block: Block, key: string, at: string): string {
  const value = block[key];
  if (typeof value !== "string") throw new LlamaportError("invalid_request", `${at}.${key}: expected a string`, { param: `${at}.${key}` });
  return value;
}

/** Text blocks only (system prompts, tool results), joined: separate blocks are separate passages. */
function flatten(value: string | unknown[], field: string): string {
  return blocksOf(value, field)
    .map((block, i) =>
      block.type === "text" ? stringField(block, "text", `${field}[${i}]`) : refuseBlock(block, `${field}[${i}]`, '"text" blocks are'),
    )
    .join("\n\n");
}

/**
 * An earlier answer's reasoning (from a Claude model, in a conversation that moved here): Anthropic's API leaves the
 * thinking of earlier turns out of the prompt too, and a local model could not read a signed or redacted one anyway.
 */
const reasoningBlocks = new Set(["thinking", "redacted_thinking"]);

/** An assistant turn: its text blocks and its `tool_use` blocks (calls, in order); thinking blocks are left out. */
function assistantMessage(content: string | unknown[], field: string): ChatMessage {
  const texts: string[] = [];
  const toolCalls: ToolCall[] = [];
  blocksOf(content, field).forEach((block, i) => {
    const at = `${field}[${i}]`;
    if (block.type === "text") texts.push(stringField(block, "text", at));
    else if (block.type === "tool_use") {
      const input = block.input;
      if (typeof input !== "object" || input === null || Array.isArray(input))
        throw new LlamaportError("invalid_request", `${at}.input: expected an object`, { param: `${at}.input` });
      toolCalls.push({
        id: stringField(block, "id", at),
        name: stringField(block, "name", at),
        arguments: input as Record<string, unknown>,
      });
    } else if (!reasoningBlocks.has(block.type)) refuseBlock(block, at, '"text", "tool_use" and thinking blocks are');
  });
  return { role: "assistant", content: texts.join("\n\n"), ...(toolCalls.length ? { toolCalls } : {}) };
}

/** A user turn: `tool_result` blocks answer the calls of the turn before; the text blocks are the user's own message. */
function userMessages(content: string | unknown[], field: string): ChatMessage[] {
  const results: ChatMessage[] = [];
  const texts: string[] = [];
  blocksOf(content, field).forEach((block, i) => {
    const at = `${field}[${i}]`;
    if (block.type === "text") texts.push(stringField(block, "text", at));
    else if (block.type === "tool_result") {
      const raw = block.content === undefined ? "" : block.content;
      if (typeof raw !== "string" && !Array.isArray(raw))
        throw new LlamaportError("invalid_request", `${at}.content: expected a string or text blocks`, { param: `${at}.content` });
      const text = flatten(raw, `${at}.content`);
      // The model reads a failed tool run as such; there is no other place for is_error in a chat template.
      results.push({
        role: "tool",
        content: block.is_error === true ? `Error: ${text}` : text,
        toolCallId: stringField(block, "tool_use_id", at),
      });
    } else refuseBlock(block, at, '"text" and "tool_result" blocks are');
  });
  return texts.length > 0 || results.length === 0 ? [...results, { role: "user", content: texts.join("\n\n") }] : results;
}

function chatMessages(body: PromptBody): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = body.system === undefined ? "" : flatten(body.system, "system");
  if (system) messages.push({ role: "system", content: system });
  body.messages.forEach((m, i) => {
    const field = `messages[${i}].content`;
    if (m.role === "assistant") messages.push(assistantMessage(m.content, field));
    else if (m.role === "user") messages.push(...userMessages(m.content, field));
    else messages.push({ role: "system", content: flatten(m.content, field) });
  });
  return messages;
}

function clientTools(tools: StaticDecode<typeof tool>[] | undefined) {
  return tools?.map((tool, i) => {
    if (tool.type !== undefined && tool.type !== "custom")
      throw new LlamaportError(
        "invalid_request",
        `tools[${i}].type: "${tool.type}" is a server tool, which runs on Anthropic's servers; only client tools are supported`,
        {
          param: `tools[${i}].type`,
        },
      );
    if (!tool.input_schema)
      throw new LlamaportError("invalid_request", `tools[${i}].input_schema: required`, { param: `tools[${i}].input_schema` });
    return { name: tool.name, description: tool.description, parameters: tool.input_schema };
  });
}

function toolChoiceOf(choice: StaticDecode<typeof toolChoice> | undefined): ToolChoice | undefined {
  if (choice === undefined) return undefined;
  if (choice.type === "tool") {
    if (!choice.name)
      throw new LlamaportError("invalid_request", 'tool_choice.name: required when tool_choice.type is "tool"', {
        param: "tool_choice.name",
      });
    return { name: choice.name };
  }
  return choice.type === "any" ? "required" : choice.type;
}

/**
 * Request fields that ask for what llamaport cannot do: a 400 naming the field rather than an answer without it.
 * Thinking turned off (`disabled`, `between_tools`) is what every answer here is anyway.
 */
function refuseUnsupported(body: MessagesBody): void {
  const refuse = (param: string, message: string) => {
    throw new LlamaportError("invalid_request", `${param}: ${message}`, { param });
  };
  const thinking = body.thinking?.type;
  if (thinking !== undefined && thinking !== "disabled" && thinking !== "between_tools")
    refuse(
      "thinking",
      `extended thinking ("${thinking}") is not available: llamaport does not separate a model's reasoning from its answer`,
    );
  if (body.output_config?.effort != null) refuse("output_config.effort", "effort levels are not available for llamaport's models");
  if (body.container !== undefined) refuse("container", "code execution containers run on Anthropic's servers; llamaport has none");
  if (body.mcp_servers !== undefined) refuse("mcp_servers", "llamaport does not connect to MCP servers");
  if (body.context_management !== undefined) refuse("context_management", "context editing is not available in llamaport");
}

/** `output_config.format` (or the beta's `output_format`): a JSON Schema the answer must match. */
function formatOf(body: MessagesBody): GenerateOptions["format"] {
  return (body.output_config?.format ?? body.output_format)?.schema;
}

function stopReason(summary: GenerationSummary): "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" {
  if (summary.finishReason === "length") return "max_tokens";
  if (summary.finishReason === "toolCalls") return "tool_use";
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
const errorTypes: Record<number, string> = {
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  500: "api_error",
  503: "overloaded_error",
};

const errorBody = (problem: Problem) => ({
  type: "error",
  error: { type: errorTypes[problem.status] ?? "invalid_request_error", message: problem.message },
});

const supported = (yes: boolean) => ({ supported: yes });

/**
 * A model as Anthropic's Models API shows it. Capabilities say what llamaport does with it: no images, PDFs, thinking,
 * effort, server tools, citations, batches or context editing; structured outputs through `output_config.format`.
 */
function modelObject(model: ModelInfo) {
  return {
    type: "model",
    id: model.name,
    display_name: model.name,
    created_at: model.modifiedAt,
    max_input_tokens: model.context,
    max_tokens: model.defaults.maxTokens ?? model.context,
    lifecycle: "active",
    line: null,
    deprecated_at: null,
    retires_at: null,
    capabilities: {
      batch: supported(false),
      citations: supported(false),
      code_execution: supported(false),
      context_management: { supported: false, clear_thinking_20251015: null, clear_tool_uses_20250919: null, compact_20260112: null },
      effort: {
        supported: false,
        low: supported(false),
        medium: supported(false),
        high: supported(false),
        max: supported(false),
        xhigh: null,
      },
      image_input: supported(false),
      pdf_input: supported(false),
      server_tools: { supported: false, code_execution: supported(false), web_search: supported(false) },
      structured_outputs: supported(true),
      thinking: {
        supported: false,
        types: { adaptive: supported(false), between_tools: supported(true), disabled: supported(true), enabled: supported(false) },
      },
    },
  };
}

/** Every model once, newest file first (Anthropic lists the most recently released first). */
async function modelList(engine: EngineFacade) {
  const models = await engine.listModels();
  return models.sort((a, b) => Date.parse(b.modifiedAt) - Date.parse(a.modifiedAt) || a.name.localeCompare(b.name)).map(modelObject);
}

/** One page of the list: `limit` (1-1000, default 20) after `after_id` or before `before_id`, as Anthropic pages it. */
function modelPage(all: ReturnType<typeof modelObject>[], query: Record<string, string | undefined>) {
  const limit = query.limit === undefined ? 20 : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw new LlamaportError("invalid_request", "limit: must be an integer between 1 and 1000", { param: "limit" });
  const indexOf = (param: "after_id" | "before_id") => {
    const id = query[param];
    if (id === undefined) return undefined;
    const index = all.findIndex((m) => m.id === id);
    if (index < 0) throw new LlamaportError("invalid_request", `${param}: no model "${id}" in the list`, { param });
    return index;
  };
  const after = indexOf("after_id");
  const before = indexOf("before_id");
  const end = before ?? all.length;
  const start = before !== undefined ? Math.max(0, end - limit) : (after ?? -1) + 1;
  const data = all.slice(start, Math.min(end, start + limit));
  const more = before !== undefined ? start > 0 : start + data.length < all.length;
  return { data, has_more: more, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null };
}

/**
 * Anthropic's stream: each text run and each tool call is a content block (`content_block_start` … `_stop`), numbered
 * in order; a call's input arrives as `input_json_delta` pieces.
 */
function streamFormat(message: object): StreamFormat {
  let blocks = 0;
  let open = false;
  const blockStart = (contentBlock: object) => {
    open = true;
    const start = sseEvent("content_block_start", { type: "content_block_start", index: blocks, content_block: contentBlock });
    return blocks === 0 ? [start, sseEvent("ping", { type: "ping" })] : [start];
  };
  const blockStop = () => {
    if (!open) return [];
    open = false;
    return [sseEvent("content_block_stop", { type: "content_block_stop", index: blocks++ })];
  };
  return {
    start: (start) => [
      sseEvent("message_start", {
        type: "message_start",
        message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: usage(start, 0) },
      }),
    ],
    // Text comes before any call (the model's turn ends with its calls), so the text block is always block 0.
    textStart: () => blockStart({ type: "text", text: "" }),
    text: template({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: TEXT } }, { event: "content_block_delta" }),
    textEnd: blockStop,
    toolCallStart: (call) => blockStart({ type: "tool_use", id: call.id, name: call.name, input: {} }),
    toolCallArguments: () =>
      template(
        { type: "content_block_delta", index: blocks, delta: { type: "input_json_delta", partial_json: TEXT } },
        { event: "content_block_delta" },
      ),
    toolCallEnd: blockStop,
    done: (summary) => [
      // A reply with no text and no call still has its (empty) text block, as the non-streamed one does.
      ...(blocks === 0 && !open ? blockStart({ type: "text", text: "" }) : []),
      // A call cut short by max_tokens has no end event: its block is closed here.
      ...blockStop(),
      sseEvent("message_delta", {
        type: "message_delta",
        delta: { stop_reason: stopReason(summary), stop_sequence: summary.stopSequence ?? null },
        usage: usage(summary, summary.completionTokens),
      }),
      sseEvent("message_stop", { type: "message_stop" }),
    ],
  };
}

export default definePlugin({
  name: "anthropic",
  version: "1.1.0",
  prefixes: ["/v1/messages"],
  fields: {
    maxTokens: "max_tokens",
    topP: "top_p",
    topK: "top_k",
    stop: "stop_sequences",
    format: "output_config.format",
    toolChoice: "tool_choice",
    parallelToolCalls: "tool_choice.disable_parallel_tool_use",
    "tools[].parameters": "tools[].input_schema",
  },
  error: errorBody,
  streamError: (problem) => sseEvent("error", errorBody(problem)),
  routes: [
    route({
      method: "POST",
      path: "/v1/messages",
      body: messagesBody,
      async handler({ body, engine, signal }) {
        refuseUnsupported(body);
        const id = randomId("msg_");
        const generation = engine.chat({
          model: body.model,
          messages: chatMessages(body),
          maxTokens: body.max_tokens,
          temperature: body.temperature,
          topP: body.top_p,
          topK: body.top_k,
          stop: body.stop_sequences,
          format: formatOf(body),
          tools: clientTools(body.tools),
          toolChoice: toolChoiceOf(body.tool_choice),
          parallelToolCalls: body.tool_choice?.disable_parallel_tool_use === true ? false : undefined,
          signal,
        });
        const message = { id, type: "message", role: "assistant", model: generation.model };
        if (!body.stream) {
          const { text, toolCalls, summary } = await generation.collect();
          const unfinished = summary.unfinishedToolCall;
          return {
            ...message,
            content: [
              ...(text || (toolCalls.length === 0 && !unfinished) ? [{ type: "text", text }] : []),
              ...toolCalls.map((call) => ({ type: "tool_use", id: call.id, name: call.name, input: call.arguments })),
              // A call cut short by max_tokens stays the last block, as Anthropic returns it (and as the stream began
              // it): its arguments never completed, so its input is empty.
              ...(unfinished ? [{ type: "tool_use", id: unfinished.id, name: unfinished.name, input: {} }] : []),
            ],
            stop_reason: stopReason(summary),
            stop_sequence: summary.stopSequence ?? null,
            usage: usage(summary, summary.completionTokens),
          };
        }
        return sse(frames(generation, streamFormat(message)));
      },
    }),
    route({
      method: "POST",
      path: "/v1/messages/count_tokens",
      body: countTokensBody,
      async handler({ body, engine }) {
        // The prompt /v1/messages would evaluate: the chat template's markers and the tools' documentation included.
        const { tokens } = await engine.chatPrompt({
          model: body.model,
          messages: chatMessages(body),
          tools: clientTools(body.tools),
          toolChoice: toolChoiceOf(body.tool_choice),
        });
        return { input_tokens: tokens.length };
      },
    }),
    // The OpenAI plugin serves these paths too; Anthropic's SDK always sends anthropic-version, which picks these.
    {
      method: "GET",
      path: "/v1/models",
      when: { header: "anthropic-version" },
      handler: async ({ engine, query }) => modelPage(await modelList(engine), query),
    },
    {
      method: "GET",
      path: "/v1/models/:model_id",
      when: { header: "anthropic-version" },
      handler: async ({ engine, params }) => {
        const found = await engine.findModel(params.model_id ?? "");
        if (!found) throw new LlamaportError("not_found", `model: ${params.model_id}`, { param: "model" });
        return modelObject(found);
      },
    },
  ],
});
