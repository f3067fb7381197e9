// plugins/lines.ts: POST /lines {"model": "demo", "say": "hi"} streams the reply as NDJSON {"piece": "..."} lines.
import { definePlugin, frames, ndjson, route, t, TEXT, template } from "llamaport";

export default definePlugin({
  name: "lines",
  version: "1.0.0",
  error: (problem) => ({ failed: problem.message }),
  routes: [
    route({
      method: "POST",
      path: "/lines",
      body: t.Object({ model: t.String(), say: t.String({ minLength: 1 }), max: t.Optional(t.Integer()) }),
      handler({ body, engine, signal }) {
        const messages = [{ role: "user" as const, content: body.say }];
        const generation = engine.chat({ model: body.model, messages, maxTokens: body.max, signal });
        return ndjson(
          frames(generation, {
            text: template({ piece: TEXT }), // serialised once; each token fills in TEXT
            done: (summary) => [{ done: summary.finishReason, tokens: summary.completionTokens }],
          }),
        );
      },
    }),
  ],
});
