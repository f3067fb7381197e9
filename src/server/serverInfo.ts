/** What the server tells plugins about itself: its version and a build id in llama-server's `b<build>-<hash>` form. */
import { createHash } from "node:crypto";
import type { ServerInfo } from "../pluginApi/definePlugin.ts";
import packageJson from "../../package.json" with { type: "json" };

/**
 * llama-server reports `b<build number>-<commit>` as `build_info` and `system_fingerprint`, and tools parse that shape.
 * llamaport has no build counter, so the number is the version (major * 10000 + minor * 100 + patch) and the "commit" a
 * short hash of this version and the pinned engine, which changes exactly when the answers may.
 */
export function serverInfo(version: string): ServerInfo {
  const [major = 0, minor = 0, patch = 0] = version.split(/[.-]/).map((part) => Number.parseInt(part, 10) || 0);
  const engine = packageJson.dependencies["node-llama-cpp"];
  const hash = createHash("sha256").update(`llamaport ${version} node-llama-cpp ${engine}`).digest("hex").slice(0, 7);
  return { version, buildInfo: `b${major * 10000 + minor * 100 + patch}-${hash}` };
}
