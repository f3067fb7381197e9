import { loadModelsFile } from "./src/config/loadModelsFile.ts";
try { console.log(JSON.stringify(await loadModelsFile(process.argv[2]!), null, 1)); } catch (e) { console.log(String((e as Error).message), JSON.stringify(e)); }
