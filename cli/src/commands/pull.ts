import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { DEFAULT_MODEL_URI, NanoError, readEnv } from "@nanollm/shared";
import { loadDaemon } from "./loadDaemon.js";

export function pullCommand(): Command {
  const env = readEnv();
  return new Command("pull")
    .description("fetch a model once into the models folder (with its image projector, when an hf: repository ships one) and print its path")
    .argument("[model]", "hf:OWNER/REPO[:QUANT], hf:OWNER/REPO/FILE.gguf, an http(s) URL of a .gguf file, or a local .gguf path", DEFAULT_MODEL_URI)
    .option("--models-dir <dir>", "where to keep it (env NANOLLM_MODELS_DIR; the daemon's `serve --models-dir`)", env.modelsDir)
    .action(async (model: string, opts: { modelsDir: string }) => {
      const { resolveModel, isRemoteModel } = await loadDaemon("pull");
      if (!isRemoteModel(model)) {
        // Nothing to fetch: a file that is there is its own answer; anything else is a mistake.
        if (!fs.existsSync(model) || !fs.statSync(model).isFile()) {
          throw new NanoError("INVALID_ARGUMENT", `"${model}" is neither an hf: URI, an http(s) URL nor a model file; give e.g. ${DEFAULT_MODEL_URI} or the path of a .gguf file.`);
        }
        process.stdout.write(`${path.resolve(model)}\n`);
        return;
      }
      const offlineHint = "when offline, use a .gguf file you have instead.";
      process.stdout.write(`${await resolveModel(model, opts.modelsDir, { connectTimeoutMs: env.connectTimeoutMs, offlineHint })}\n`);
    });
}
