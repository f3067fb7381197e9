/** Makes `import ... from "llamaport"` work in plugin files loaded from disk, including from the compiled binary. */
import * as api from "../pluginApi/index.ts";

let registered = false;

export function registerApiModule(): void {
  if (registered) return;
  registered = true;
  Bun.plugin({
    name: "llamaport-api",
    setup(build) {
      // The plugins get the host's own objects, so `instanceof StreamBody` and friends hold across the boundary.
      build.module("llamaport", () => ({ exports: { ...api }, loader: "object" }));
    },
  });
}
