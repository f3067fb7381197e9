/** Anthropic's Python SDK (where it is installed) against the real server: models, messages, streamed usage, image refusal. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startTestServer, type TestServer } from "../support/testServer.ts";

// PyPI is not reachable here: the SDK comes from the machine's wheel store when there is one, e.g.
//   python3 -m venv /tmp/llamaport-py && /tmp/llamaport-py/bin/pip install --no-index --find-links /opt/pypi/files anthropic
// and LLAMAPORT_TEST_PYTHON=/tmp/llamaport-py/bin/python points this test at it.
const python = process.env.LLAMAPORT_TEST_PYTHON ?? "python3";
const hasSdk = Bun.spawnSync([python, "-c", "import anthropic"], { stderr: "ignore", stdout: "ignore" }).exitCode === 0;
if (!hasSdk)
  console.warn(
    `SKIPPING tests/clients/anthropicPython.test.ts: ${python} cannot import anthropic (set LLAMAPORT_TEST_PYTHON to a Python that can).`,
  );

let server: TestServer;
beforeAll(async () => {
  if (hasSdk) server = await startTestServer({ demo: { source: "synthetic:demo", context: 512, parallel: 1 } });
});
afterAll(() => server?.[Symbol.asyncDispose]());

test.if(hasSdk)(
  "the Python SDK with its defaults: models.list, messages with usage, a streamed message_start with the prompt's size, an image refused",
  async () => {
    const run = Bun.spawn([python, join(import.meta.dir, "anthropic_python.py"), server.url], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    expect({ code, err }).toEqual({ code: 0, err: "" });
    const seen = JSON.parse(out);
    expect(seen.models).toEqual(["demo"]);
    expect(seen.retrieved).toBe("model");
    expect(seen.usage.output).toBe(5);
    expect(seen.usage.input + seen.usage.cached).toBeGreaterThan(0);
    expect(seen.streamed.text).toBe(seen.text);
    expect(seen.streamed.started_prompt).toBe(seen.usage.input + seen.usage.cached);
    expect(seen.image.status).toBe(400);
    expect(seen.image.message).toStartWith('messages[0].content[1].type: content block type "image" is not supported');
  },
);
