/**
 * Builds the chat page as one HTML string: the client script bundled by `bun build`, the style sheet, both inlined.
 * Called as a Bun macro (webchatPlugin.ts), so it runs while the server's source is transpiled or compiled into the
 * binary, and the page is a string constant in both: no files to find at run time, no network, no CDN.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

const client = join(import.meta.dir, "client");

export function bundlePage(): { html: string; script: string; style: string } {
  // A macro cannot call Bun.build (the bundler waits for the macro): run the bundler as a child, as Bun's docs advise.
  const built = Bun.spawnSync([process.execPath, "build", join(client, "chat.ts"), "--target=browser", "--format=esm", "--minify"], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (built.exitCode !== 0) throw new Error(`bundling the chat page failed: ${built.stderr.toString()}`);
  // Inside an inline script, "</script" would end it early; "<\/script" means the same to JavaScript.
  const script = built.stdout.toString().trim().replaceAll("</script", "<\\/script");
  const style = readFileSync(join(client, "chat.css"), "utf8").trim();
  const html = readFileSync(join(client, "index.html"), "utf8");
  return { html, script, style };
}
