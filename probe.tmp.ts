import { startTestServer, postJson } from "./tests/support/testServer.ts";
const t0 = performance.now();
await using server = await startTestServer({ demo: { source: "synthetic:demo", context: 512, parallel: 2 } }, { plugins: "/tmp/anth/plugins" });
console.log("started", performance.now() - t0);
const r = await postJson(`${server.url}/v1/messages`, { model: "demo", max_tokens: 20, temperature: 0, messages: [{ role: "user", content: "Hello there" }] });
console.log(r.status, await r.text(), performance.now() - t0);
const s = await postJson(`${server.url}/v1/messages`, { model: "demo", max_tokens: 5, stream: true, temperature: 0, messages: [{ role: "user", content: [{type:"text", text:"Hello there"}] }] });
console.log(s.status, [...s.headers], await s.text());
for (const body of [{ model: "demo", messages: [{ role: "user", content: "x" }] }, { model: "nope", max_tokens: 3, messages: [{ role: "user", content: "x" }] }, "{bad", { model: "demo", max_tokens: 3, messages: [{ role: "user", content: [{type:"image"}] }] }, { model: "demo", max_tokens: 3, stream: true, messages: [{ role: "user", content: "x" }], system: [{type:"text",text:"be nice"}], tools: [] }]) {
  const e = await postJson(`${server.url}/v1/messages`, body); console.log(e.status, e.headers.get("content-type"), await e.text());
}
const c = await postJson(`${server.url}/v1/messages/count_tokens`, { model: "demo", messages: [{ role: "user", content: "Hello there" }], system: "sys" });
console.log(c.status, await c.text());
console.log(server.logs.join("\n"));
