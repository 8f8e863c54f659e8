import fs from "node:fs";
import { resolveModelFile } from "node-llama-cpp";
import { fail } from "@nanollm/shared";

/**
 * A local path stays as it is; an `hf:` URI (or URL) is fetched once into `modelsDir` with
 * node-llama-cpp's own downloader, showing its progress bar, and reused after that.
 */
export async function resolveModel(pathOrUri: string, modelsDir: string): Promise<string> {
  if (!/^(hf:|https?:\/\/)/.test(pathOrUri)) return pathOrUri;
  fs.mkdirSync(modelsDir, { recursive: true });
  try {
    return await resolveModelFile(pathOrUri, { directory: modelsDir, cli: process.stderr.isTTY === true });
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw fail.unavailable(`Could not download ${pathOrUri} (${why}); when offline, pass --model PATH.gguf with a model file you have.`);
  }
}
