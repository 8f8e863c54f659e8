// Extracts llama.cpp's public headers from the source bundle that node-llama-cpp ships (the same
// commit as its prebuilt libraries) into native/llama/, once. Nothing of llama.cpp is compiled.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { commit, extract } from "./bundle.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
if (extract(path.join(here, "llama"), ["include/llama.h", "include/llama-cpp.h", "ggml/include"])) {
  console.error(`native: llama.cpp headers ${commit.slice(0, 7)} extracted`);
}
