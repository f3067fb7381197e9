/** FileDigests: the right SHA-256, computed once per file version, kept across restarts, without holding up the event loop. */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FileDigests } from "../../src/engine/FileDigests.ts";
import { tempDir } from "../support/testServer.ts";
import { waitFor } from "../support/waitFor.ts";

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

test("the digest is the file's SHA-256, computed once however often and however concurrently it is asked for", async () => {
  using dir = tempDir();
  const file = join(dir.path, "model.gguf");
  writeFileSync(file, "GGUF and some weights".repeat(100_000));
  const computed: string[] = [];
  const digests = new FileDigests({ onComputed: (path) => computed.push(path) });
  const answers = await Promise.all([digests.digest(file), digests.digest(file), digests.digest(file)]);
  expect(answers).toEqual([sha256(file), sha256(file), sha256(file)]);
  expect(await digests.digest(file)).toBe(sha256(file));
  expect(computed).toEqual([file]);
});

test("an edited file (other size or modification time) is hashed again", async () => {
  using dir = tempDir();
  const file = join(dir.path, "model.gguf");
  writeFileSync(file, "first version");
  let computed = 0;
  const digests = new FileDigests({ onComputed: () => computed++ });
  const first = await digests.digest(file);
  writeFileSync(file, "second version");
  utimesSync(file, new Date(), new Date(Date.now() + 5_000));
  const second = await digests.digest(file);
  expect(second).toBe(sha256(file));
  expect(second).not.toBe(first);
  expect(computed).toBe(2);
});

test("digests are kept in the store: a restart does not read the file again", async () => {
  using dir = tempDir();
  const file = join(dir.path, "model.gguf");
  const store = join(dir.path, "cache", "digests.json");
  writeFileSync(file, "weights".repeat(1000));
  let computed = 0;
  const onComputed = () => computed++;
  await new FileDigests({ store, onComputed }).digest(file);
  // The store is written after the digest is returned: wait until it holds this file.
  await waitFor(
    () => readFile(store, "utf8").catch(() => ""),
    (text) => text.includes(file),
  );
  const restarted = new FileDigests({ store, onComputed });
  expect(await restarted.digest(file)).toBe(sha256(file));
  expect(computed).toBe(1);
  // A store that is not JSON only costs a recomputation.
  writeFileSync(store, "{ not json");
  expect(await new FileDigests({ store, onComputed }).digest(file)).toBe(sha256(file));
  expect(computed).toBe(2);
});

test("hashing a large file leaves the event loop free: timers keep firing while it reads", async () => {
  using dir = tempDir();
  const file = join(dir.path, "big.gguf");
  writeFileSync(file, "");
  truncateSync(file, 64 * 1024 ** 2); // sparse: 64 MiB of zeros, nothing written to disk
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const digest = await new FileDigests().digest(file);
  clearInterval(timer);
  expect(digest).toBe(
    createHash("sha256")
      .update(Buffer.alloc(64 * 1024 ** 2))
      .digest("hex"),
  );
  // 64 chunks of 1 MiB: a loop blocked for the whole file would have fired the timer at most once.
  expect(ticks).toBeGreaterThan(10);
});
