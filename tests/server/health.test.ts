/**
 * The server listens before llama.cpp is ready: /health says loading (503) until the engine has started, then ok (200).
 * The 503 bodies also carry llama-server's error object, which its clients read.
 */
import { expect, test } from "bun:test";
import type { Engine } from "../../src/engine/Engine.ts";
import { AccessPolicy } from "../../src/server/accessPolicy.ts";
import { LlamaportServer } from "../../src/server/LlamaportServer.ts";

test("/health: 503 loading while the engine starts, 200 ok after, 503 error if it fails", async () => {
  for (const outcome of ["ok", "error"] as const) {
    const { promise: started, resolve: finish, reject: fail } = Promise.withResolvers<void>();
    // Only start/dispose are used before any request reaches the engine; a stand-in keeps llama.cpp out of this test.
    const engine = { start: () => started, beginShutdown: () => {}, dispose: async () => {} } as unknown as Engine;
    const server = new LlamaportServer({
      engine,
      builtins: {},
      host: "127.0.0.1",
      port: 0,
      version: "test",
      maxBodyBytes: 1024,
      access: new AccessPolicy({ boundHost: "127.0.0.1", apiKeys: () => [] }),
      idleTimeoutSeconds: 30,
      maxRequests: 64,
      log: () => {},
    });
    await server.start();
    const loading = await fetch(`${server.url}/health`);
    expect(loading.status).toBe(503);
    expect(await loading.json()).toEqual({ status: "loading", error: { code: 503, message: "Loading model", type: "unavailable_error" } });
    if (outcome === "ok") finish();
    else fail(new Error("no binary for this CPU"));
    await server.ready;
    const after = await fetch(`${server.url}/health`);
    expect(after.status).toBe(outcome === "ok" ? 200 : 503);
    expect(await after.json()).toEqual(
      outcome === "ok"
        ? { status: "ok" }
        : { status: "error", error: { code: 503, message: "no binary for this CPU", type: "unavailable_error" } },
    );
    await server.stop();
  }
});
