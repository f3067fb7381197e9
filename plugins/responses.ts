/**
 * OpenAI Responses API: POST /v1/responses (plain and streamed with typed events) over the llamaport engine. Stateless:
 * nothing is stored, so `previous_response_id`, `conversation`, `store: true` and `background: true` are refused.
 */
import {
  type ChatMessage,
  type ChatRequest,
  definePlugin,
  frames,
  type GenerationSummary,
  LlamaportError,
  nullable,
  type Problem,
  randomId,
  route,
  type StaticDecode,
  type StreamFormat,
  sse,
  sseEvent,
  slot,
  t,
  TEXT,
  type ToolCall,
  toProblem,
  template,
} from "llamaport";

const toolChoice = t.Union([
  t.Literal("auto"),
  t.Literal("none"),
  t.Literal("required"),
  t.Object({ type: t.Literal("function"), name: t.String() }),
]);
const textFormat = t.Union([
  t.Object({ type: t.Literal("text") }),
  t.Object({ type: t.Literal("json_object") }),
  t.Object({ type: t.Literal("json_schema"), name: t.Optional(t.String()), schema: t.Record(t.String(), t.Unknown()) }),
]);

/** Fields that change nothing here (metadata, caching hints, tiers) pass as extra properties, as OpenAI's own ignore-able ones. */
const responsesBody = t.Object({
  model: t.String({ minLength: 1 }),
  input: t.Union([t.String(), t.Array(t.Unknown())]),
  instructions: nullable(t.String()),
  tools: nullable(t.Array(t.Unknown())),
  tool_choice: nullable(toolChoice),
  parallel_tool_calls: nullable(t.Boolean()),
  max_output_tokens: nullable(t.Integer({ minimum: 1 })),
  temperature: nullable(t.Number({ minimum: 0, maximum: 2 })),
  top_p: nullable(t.Number({ minimum: 0, maximum: 1 })),
  text: nullable(t.Object({ format: t.Optional(textFormat) })),
  stream: nullable(t.Boolean()),
  // Stateless: these must be absent, null or off.
  store: nullable(t.Boolean()),
  previous_response_id: nullable(t.String()),
  conversation: t.Optional(t.Unknown()),
  background: nullable(t.Boolean()),
  prompt: t.Optional(t.Unknown()),
  top_logprobs: nullable(t.Integer({ minimum: 0 })),
});
type ResponsesBody = StaticDecode<typeof responsesBody>;

function invalid(param: string, message: string): LlamaportError {
  return new LlamaportError("invalid_request", `${param}: ${message}`, { param });
}

/** Requests that need stored state or features this server does not have are refused, naming the field. */
function refuseStateful(body: ResponsesBody): void {
  if (body.previous_response_id !== undefined)
    throw invalid("previous_response_id", "llamaport does not store responses; send the whole conversation in input instead");
  if (body.conversation !== undefined && body.conversation !== null)
    throw invalid("conversation", "llamaport does not store conversations; send the whole conversation in input instead");
  if (body.store === true) throw invalid("store", "llamaport does not store responses; leave store out or set it to false");
  if (body.background === true) throw invalid("background", "background responses are not supported");
  if (body.prompt !== undefined && body.prompt !== null) throw invalid("prompt", "stored prompt templates are not supported");
  if (body.top_logprobs) throw invalid("top_logprobs", "log probabilities are not supported on this route");
}

type Item = { type?: unknown; [key: string]: unknown };

/** The text of a message's content: a string, or input_text / output_text parts. */
function textOf(value: unknown, field: string): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) throw invalid(field, "expected a string or an array of content parts");
  return value
    .map((part: Item, j) => {
      if (part?.type !== "input_text" && part?.type !== "output_text")
        throw invalid(
          `${field}[${j}].type`,
          `content part type ${JSON.stringify(part?.type)} is not supported; only input_text and output_text are`,
        );
      if (typeof part.text !== "string") throw invalid(`${field}[${j}].text`, "expected a string");
      return part.text;
    })
    .join("");
}

function stringOf(item: Item, key: string, at: string): string {
  if (typeof item[key] !== "string") throw invalid(`${at}.${key}`, "expected a string");
  return item[key] as string;
}

/** A function_call item sent back: the call joins the assistant turn before it (or starts one). */
function addCall(messages: ChatMessage[], item: Item, at: string): void {
  let args: unknown;
  try {
    args = JSON.parse(stringOf(item, "arguments", at) || "{}");
  } catch {
    throw invalid(`${at}.arguments`, "expected a JSON object in a string");
  }
  if (typeof args !== "object" || args === null || Array.isArray(args)) throw invalid(`${at}.arguments`, "expected a JSON object");
  const call: ToolCall = {
    id: stringOf(item, "call_id", at),
    name: stringOf(item, "name", at),
    arguments: args as Record<string, unknown>,
  };
  const last = messages.at(-1);
  if (last?.role === "assistant") last.toolCalls = [...(last.toolCalls ?? []), call];
  else messages.push({ role: "assistant", content: "", toolCalls: [call] });
}

function inputMessages(body: ResponsesBody): ChatMessage[] {
  const messages: ChatMessage[] = body.instructions ? [{ role: "system", content: body.instructions }] : [];
  if (typeof body.input === "string") return [...messages, { role: "user", content: body.input }];
  body.input.forEach((raw, i) => {
    const at = `input[${i}]`;
    if (typeof raw !== "object" || raw === null) throw invalid(at, "expected an input item object");
    const item = raw as Item;
    const type = item.type ?? "message";
    if (type === "message") {
      const role = item.role;
      if (role !== "user" && role !== "assistant" && role !== "system" && role !== "developer")
        throw invalid(`${at}.role`, "expected user, assistant, system or developer");
      const text = textOf(item.content, `${at}.content`);
      const last = messages.at(-1);
      // An output message item may follow the calls of the same turn; keep them in one assistant message.
      if (role === "assistant" && last?.role === "assistant" && !last.toolCalls) last.content += text;
      else messages.push({ role: role === "developer" ? "system" : role, content: text });
    } else if (type === "function_call") addCall(messages, item, at);
    else if (type === "function_call_output")
      messages.push({ role: "tool", content: textOf(item.output, `${at}.output`), toolCallId: stringOf(item, "call_id", at) });
    else
      throw invalid(
        `${at}.type`,
        `input item type ${JSON.stringify(type)} is not supported; only message, function_call and function_call_output are`,
      );
  });
  if (messages.length === 0) throw invalid("input", "must not be empty");
  return messages;
}

/**
 * Function tools only: built-in tools (web_search, file_search, ...) run on OpenAI's servers. `strict` is accepted
 * either way: calls always match the schema's shape (see README). Checked here rather than by the body schema, so a
 * client hears which tool and field it got wrong.
 */
function functionTools(tools: unknown[] | undefined): ChatRequest["tools"] {
  return tools?.map((raw, i) => {
    const tool = (raw ?? {}) as Item;
    if (tool.type !== "function")
      throw invalid(`tools[${i}].type`, `tool type ${JSON.stringify(tool.type)} is not supported; only function tools are`);
    const name = stringOf(tool, "name", `tools[${i}]`);
    const description = tool.description ?? undefined;
    if (description !== undefined && typeof description !== "string") throw invalid(`tools[${i}].description`, "expected a string");
    const parameters = tool.parameters ?? undefined;
    if (parameters !== undefined && (typeof parameters !== "object" || Array.isArray(parameters)))
      throw invalid(`tools[${i}].parameters`, "expected a JSON Schema object");
    return { name, description, parameters: parameters as Record<string, unknown> | undefined };
  });
}

function chatRequest(body: ResponsesBody, signal: AbortSignal): ChatRequest {
  refuseStateful(body);
  const format = body.text?.format;
  const choice = body.tool_choice;
  return {
    model: body.model,
    messages: inputMessages(body),
    tools: functionTools(body.tools),
    toolChoice: typeof choice === "object" ? { name: choice.name } : choice,
    parallelToolCalls: body.parallel_tool_calls,
    maxTokens: body.max_output_tokens,
    temperature: body.temperature,
    topP: body.top_p,
    format: format?.type === "json_object" ? "json" : format?.type === "json_schema" ? format.schema : undefined,
    signal,
  };
}

type OutputItem = Record<string, unknown>;

function messageItem(id: string, text: string, status: string): OutputItem {
  return { id, type: "message", status, role: "assistant", content: [{ type: "output_text", text, annotations: [], logprobs: [] }] };
}

function callItem(call: Pick<ToolCall, "id" | "name">, id: string, args: string, status: string): OutputItem {
  return { id, type: "function_call", status, call_id: call.id, name: call.name, arguments: args };
}

function usage(summary: GenerationSummary) {
  return {
    input_tokens: summary.promptTokens,
    input_tokens_details: { cached_tokens: summary.cachedTokens },
    output_tokens: summary.completionTokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: summary.promptTokens + summary.completionTokens,
  };
}

/** The response object: `created_at` and the request's settings; output, status and usage once known. */
function responseObject(body: ResponsesBody, id: string, model: string) {
  const choice = body.tool_choice ?? "auto";
  const base = {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status: "in_progress",
    error: null,
    incomplete_details: null as { reason: string } | null,
    instructions: body.instructions ?? null,
    max_output_tokens: body.max_output_tokens ?? null,
    model,
    output: [] as OutputItem[],
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    previous_response_id: null,
    store: false,
    temperature: body.temperature ?? null,
    text: { format: body.text?.format ?? { type: "text" } },
    tool_choice: choice,
    tools: body.tools ?? [],
    top_p: body.top_p ?? null,
    truncation: "disabled",
    metadata: {},
    usage: null as ReturnType<typeof usage> | null,
  };
  return {
    base,
    /** The finished response with its output items. */
    final(summary: GenerationSummary, output: OutputItem[]) {
      const incomplete = summary.finishReason === "length";
      return {
        ...base,
        status: incomplete ? "incomplete" : "completed",
        incomplete_details: incomplete ? { reason: "max_output_tokens" } : null,
        output,
        usage: usage(summary),
      };
    },
  };
}

/** Numbers one stream's events from 0 (`sequence_number`). */
class Sequence {
  private value = 0;

  next(): number {
    return this.value++;
  }
}

/**
 * The typed events OpenAI streams: the response created and in progress; per output item `output_item.added`, its
 * content (text deltas through a template, or argument deltas through one per call), the `.done` events; and at the
 * end `response.completed` (or `response.incomplete` at max_output_tokens). Every event has a `sequence_number`.
 */
function streamFormat(response: ReturnType<typeof responseObject>, sequence: Sequence): StreamFormat {
  const event = (type: string, data: object) => sseEvent(type, { type, ...data, sequence_number: sequence.next() });
  // The per-token templates draw from the same count.
  const number = slot(() => sequence.next());
  const messageId = randomId("msg_");
  const output: OutputItem[] = [];
  let call: { id: string; index: number } | undefined;
  // The message's text, once its run ended; its `.done` events wait for what ended it (max_output_tokens: incomplete).
  let endedText: string | undefined;
  const closeMessage = (status: string) => {
    if (endedText === undefined) return [];
    const item = messageItem(messageId, endedText, status);
    const part = { type: "output_text", text: endedText, annotations: [], logprobs: [] };
    const text = endedText;
    endedText = undefined;
    output.push(item);
    return [
      event("response.output_text.done", { item_id: messageId, output_index: 0, content_index: 0, text, logprobs: [] }),
      event("response.content_part.done", { item_id: messageId, output_index: 0, content_index: 0, part }),
      event("response.output_item.done", { output_index: 0, item }),
    ];
  };
  return {
    start: () => [event("response.created", { response: response.base }), event("response.in_progress", { response: response.base })],
    // Text comes before any call (the model's turn ends with its calls), so the message is always output 0.
    textStart: () => [
      event("response.output_item.added", { output_index: 0, item: { ...messageItem(messageId, "", "in_progress"), content: [] } }),
      event("response.content_part.added", {
        item_id: messageId,
        output_index: 0,
        content_index: 0,
        part: { type: "output_text", text: "", annotations: [], logprobs: [] },
      }),
    ],
    text: template(
      {
        type: "response.output_text.delta",
        item_id: messageId,
        output_index: 0,
        content_index: 0,
        delta: TEXT,
        logprobs: [],
        sequence_number: number,
      },
      { event: "response.output_text.delta" },
    ),
    textEnd: (text) => {
      endedText = text;
      return [];
    },
    toolCallStart: (start) => {
      // Text before a call is a whole message: the model went on to call.
      const closed = closeMessage("completed");
      call = { id: randomId("fc_"), index: output.length };
      return [
        ...closed,
        event("response.output_item.added", { output_index: call.index, item: callItem(start, call.id, "", "in_progress") }),
      ];
    },
    toolCallArguments: () =>
      template(
        {
          type: "response.function_call_arguments.delta",
          item_id: call!.id,
          output_index: call!.index,
          delta: TEXT,
          sequence_number: number,
        },
        { event: "response.function_call_arguments.delta" },
      ),
    toolCallEnd: (end) => {
      const item = callItem(end.call, call!.id, end.argumentsJson, "completed");
      output.push(item);
      return [
        event("response.function_call_arguments.done", {
          item_id: call!.id,
          output_index: call!.index,
          name: end.call.name,
          arguments: end.argumentsJson,
        }),
        event("response.output_item.done", { output_index: call!.index, item }),
      ];
    },
    done: (summary) => {
      const closed = closeMessage(summary.finishReason === "length" ? "incomplete" : "completed");
      // A call cut short (max_output_tokens) got `output_item.added` but no `.done`: it is in the output, incomplete.
      const unfinished = summary.unfinishedToolCall;
      if (unfinished && call) output.push(callItem(unfinished, call.id, unfinished.argumentsJson, "incomplete"));
      const final = response.final(summary, output);
      return [...closed, event(final.status === "completed" ? "response.completed" : "response.incomplete", { response: final })];
    },
  };
}

/** The stream, ending in `response.failed` if the engine fails after the response was created. */
async function* withFailure(items: AsyncIterable<unknown>, failed: (problem: Problem) => unknown): AsyncGenerator<unknown> {
  let started = false;
  try {
    for await (const item of items) {
      started = true;
      yield item;
    }
  } catch (error) {
    // Before the first event the host answers with an HTTP error, as OpenAI does.
    if (!started) throw error;
    yield failed(toProblem(error));
  }
}

const errorCodes: Partial<Record<Problem["code"], string>> = {
  not_found: "model_not_found",
  context_exceeded: "context_length_exceeded",
  busy: "server_busy",
};

export default definePlugin({
  name: "responses",
  version: "1.0.0",
  // Only this API's own paths: every other /v1 error stays with the openai plugin.
  prefixes: ["/v1/responses"],
  fields: {
    maxTokens: "max_output_tokens",
    topP: "top_p",
    format: "text.format",
    toolChoice: "tool_choice",
    parallelToolCalls: "parallel_tool_calls",
    messages: "input",
  },
  error: (problem) => ({
    error: {
      message: problem.message,
      type: problem.status >= 500 ? "server_error" : "invalid_request_error",
      param: problem.param ?? null,
      code: (problem.code === "not_found" && problem.param !== "model" ? null : errorCodes[problem.code]) ?? null,
    },
  }),
  routes: [
    route({
      method: "POST",
      path: "/v1/responses",
      body: responsesBody,
      async handler({ body, engine, signal }) {
        const generation = engine.chat(chatRequest(body, signal));
        const response = responseObject(body, randomId("resp_"), generation.model);
        if (!body.stream) {
          const { text, toolCalls, summary } = await generation.collect();
          const status = summary.finishReason === "length" ? "incomplete" : "completed";
          const unfinished = summary.unfinishedToolCall;
          const output = [
            ...(text || (toolCalls.length === 0 && !unfinished) ? [messageItem(randomId("msg_"), text, status)] : []),
            ...toolCalls.map((call) => callItem(call, randomId("fc_"), JSON.stringify(call.arguments), "completed")),
            // A call cut short by max_output_tokens: its arguments as far as they came, as the stream sent them.
            ...(unfinished ? [callItem(unfinished, randomId("fc_"), unfinished.argumentsJson, "incomplete")] : []),
          ];
          return response.final(summary, output);
        }
        const sequence = new Sequence();
        const failed = (problem: Problem) => {
          const error = { code: errorCodes[problem.code] ?? "server_error", message: problem.message };
          const type = "response.failed";
          return sseEvent(type, { type, response: { ...response.base, status: "failed", error }, sequence_number: sequence.next() });
        };
        return sse(withFailure(frames(generation, streamFormat(response, sequence)), failed));
      },
    }),
    {
      method: "GET",
      path: "/v1/responses/:id",
      handler: ({ params }) => {
        throw new LlamaportError("not_found", `response "${params.id}" not found: llamaport does not store responses`, { param: "id" });
      },
    },
  ],
});
