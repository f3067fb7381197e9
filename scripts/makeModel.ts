// CLI: writes a synthetic GGUF preset (into the model cache unless an output path is given) and prints its path.
import { defaultCacheDir } from "../src/config/environment.ts";
import { ensureSyntheticModel, syntheticPresets } from "../src/gguf/syntheticModels.ts";
import { writeLlamaGguf } from "../src/gguf/writeLlamaGguf.ts";

const [preset, outPath] = process.argv.slice(2);
const known = Object.keys(syntheticPresets).join(", ");
if (!preset || preset === "--help" || preset === "-h") {
  console.error(`usage: bun scripts/makeModel.ts <preset> [outPath]\npresets: ${known}`);
  process.exit(preset ? 0 : 2);
}
const spec = syntheticPresets[preset];
if (!spec) {
  console.error(`unknown synthetic model "${preset}"; known: ${known}`);
  process.exit(2);
}
if (outPath) {
  await writeLlamaGguf(outPath, spec);
  console.log(outPath);
} else {
  console.log(await ensureSyntheticModel(preset, defaultCacheDir(process.env)));
}
