/** Issue-10 measurement: per protocol, the latency a forced tool call adds over generating the same number of free text tokens. */
// Usage: bun bench/toolCalls.ts [rounds=7]
// Each request is timed over HTTP against a server in its own process (1 thread, one sequence, prompts cached after
// the first round). For each protocol and model:
//   call        a forced call (tool_choice required / any; Ollama has no tool choice, so its call is tiny-tools' own)
//   chat text   the same prompt, tools documented, tool choice auto, as many tokens as the call took (LlamaChat path);
//               only on stories, which never calls by itself
//   plain text  the same question without tools, as many tokens (LlamaCompletion path)
// "added" = call - tokens x (per-token time of the text row). Against "chat text" (same prompt, same context length)
// it is what the grammars and the call machinery cost; against "plain text" it also holds the cost of the longer
// context the tool documentation makes (on a tiny model attention over ~700 prompt tokens dominates each step).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { LogReader } from "../tests/support/LogReader.ts";

const rounds = Number(process.argv[2] ?? 7);
const stories = resolve(import.meta.dir, "../../shared/models/stories260K.gguf");
const dir = join(process.env.TMPDIR ?? "/tmp", `llamaport-bench-tools-${process.pid}`);
const modelsFile = join(dir, "models.yaml");
const models = existsSync(stories) ? ["stories", "tiny-tools"] : ["tiny-tools"];
await Bun.write(
  modelsFile,
  [
    "models:",
    "  tiny-tools: { source: synthetic:tiny-tools, context: 2048, parallel: 1, threads: 1 }",
    ...(existsSync(stories) ? [`  stories: { source: ${stories}, context: 2048, parallel: 1, threads: 1 }`] : []),
  ].join("\n"),
);
const child = Bun.spawn([process.execPath, join(import.meta.dir, "../src/main.ts"), "serve", "--port", "0", "--models", modelsFile], {
  stderr: "pipe",
  stdout: "ignore",
});
const log = new LogReader(child.stderr);
const url = (await log.waitFor(/listening on (\S+)/, 30_000))[1]!;

const question = "What is the weather in Paris?";
const parameters = {
  type: "object",
  properties: { city: { type: "string", enum: ["Paris", "Rome", "Tokyo"] }, unit: { type: "string", enum: ["c", "f"] } },
  required: ["city", "unit"],
};
const description = "Get the weather in a city";

/** One request per protocol and kind; each returns the generated token count. */
type Kind = "call" | "chat text" | "plain text";
interface Protocol {
  name: string;
  canForce: boolean;
  send(model: string, kind: Kind, maxTokens: number): Promise<number>;
}

async function post(path: string, body: unknown): Promise<any> {
  const response = await fetch(`${url}${path}`, { method: "POST", body: JSON.stringify(body) });
  const json = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

const expectCall = (ok: boolean, protocol: string) => {
  if (!ok) throw new Error(`${protocol}: no tool call`);
};

const protocols: Protocol[] = [
  {
    name: "openai chat",
    canForce: true,
    async send(model, kind, maxTokens) {
      const tools = kind === "plain text" ? undefined : [{ type: "function", function: { name: "get_weather", description, parameters } }];
      const tool_choice = kind === "call" ? "required" : undefined;
      const body = await post("/v1/chat/completions", {
        model,
        messages: [{ role: "user", content: question }],
        tools,
        tool_choice,
        max_tokens: maxTokens,
        temperature: 0,
        ignore_eos: kind !== "call",
      });
      if (kind === "call") expectCall(body.choices[0].finish_reason === "tool_calls", this.name);
      return body.usage.completion_tokens;
    },
  },
  {
    name: "responses",
    canForce: true,
    async send(model, kind, maxTokens) {
      const tools = kind === "plain text" ? undefined : [{ type: "function", name: "get_weather", description, parameters }];
      const body = await post("/v1/responses", {
        model,
        input: question,
        tools,
        tool_choice: kind === "call" ? "required" : undefined,
        max_output_tokens: maxTokens,
        temperature: 0,
      });
      if (kind === "call")
        expectCall(
          body.output.some((item: { type: string }) => item.type === "function_call"),
          this.name,
        );
      return body.usage.output_tokens;
    },
  },
  {
    name: "anthropic",
    canForce: true,
    async send(model, kind, maxTokens) {
      const tools = kind === "plain text" ? undefined : [{ name: "get_weather", description, input_schema: parameters }];
      const body = await post("/v1/messages", {
        model,
        messages: [{ role: "user", content: question }],
        tools,
        tool_choice: kind === "call" ? { type: "any" } : undefined,
        max_tokens: maxTokens,
        temperature: 0,
      });
      if (kind === "call") expectCall(body.stop_reason === "tool_use", this.name);
      return body.usage.output_tokens;
    },
  },
  {
    name: "ollama",
    canForce: false,
    async send(model, kind, maxTokens) {
      const tools = kind === "plain text" ? undefined : [{ type: "function", function: { name: "get_weather", description, parameters } }];
      const body = await post("/api/chat", {
        model,
        messages: [{ role: "user", content: question }],
        tools,
        stream: false,
        options: { temperature: 0, num_predict: maxTokens },
      });
      if (kind === "call") expectCall(body.message.tool_calls?.length === 1, this.name);
      return body.eval_count;
    },
  },
];

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median wall time in ms of `rounds` requests after one warm-up (which also fills the prompt cache), and the token count. */
async function time(run: () => Promise<number>): Promise<{ ms: number; tokens: number }> {
  await run();
  const times: number[] = [];
  let tokens = 0;
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    tokens = await run();
    times.push(performance.now() - started);
  }
  return { ms: median(times), tokens };
}

const rows: string[][] = [["protocol", "model", "row", "tokens", "ms", "ms/token", "added by the call (ms)"]];
for (const model of models) {
  for (const protocol of protocols) {
    // Ollama cannot force a call: only tiny-tools, which calls by itself, makes one there.
    const calls = protocol.canForce || model === "tiny-tools";
    if (!calls) continue;
    const call = await time(() => protocol.send(model, "call", 200));
    const kinds: Kind[] = model === "stories" ? ["chat text", "plain text"] : ["plain text"];
    rows.push([protocol.name, model, "call", String(call.tokens), call.ms.toFixed(1), (call.ms / call.tokens).toFixed(3), ""]);
    for (const kind of kinds) {
      const text = await time(() => protocol.send(model, kind, call.tokens));
      const perToken = text.ms / text.tokens;
      rows.push([
        protocol.name,
        model,
        kind,
        String(text.tokens),
        text.ms.toFixed(1),
        perToken.toFixed(3),
        (call.ms - call.tokens * perToken).toFixed(1),
      ]);
    }
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log(`${rounds} rounds per row (median), 1 thread, server in its own process, prompts cached after the warm-up request`);
console.log("added vs chat text = grammar + call machinery; vs plain text = that + the longer prompt of the tool documentation");
for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join("  "));
child.kill("SIGTERM");
await child.exited;
