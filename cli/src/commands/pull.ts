import fs from "node:fs";
import path from "node:path";
import { Command } from "commander";
import { DEFAULT_MODEL_URI, NanoError, readEnv } from "@nanollm/shared";
import { loadDaemon } from "./loadDaemon.js";

export function pullCommand(): Command {
  return new Command("pull")
    .description("fetch a model once into the models folder (with progress) and print its path")
    .argument("[model]", "hf: URI, http(s) URL or local .gguf path", DEFAULT_MODEL_URI)
    .action(async (model: string) => {
      const { resolveModel, isRemoteModel } = await loadDaemon("pull");
      if (!isRemoteModel(model)) {
        // Nothing to fetch: a file that is there is its own answer; anything else is a mistake.
        if (!fs.existsSync(model) || !fs.statSync(model).isFile()) {
          throw new NanoError("INVALID_ARGUMENT", `"${model}" is neither an hf: URI, an http(s) URL nor a model file; give e.g. ${DEFAULT_MODEL_URI} or the path of a .gguf file.`);
        }
        process.stdout.write(`${path.resolve(model)}\n`);
        return;
      }
      const env = readEnv();
      const offlineHint = "when offline, use a .gguf file you have instead.";
      process.stdout.write(`${await resolveModel(model, env.modelsDir, { connectTimeoutMs: env.connectTimeoutMs, offlineHint })}\n`);
    });
}
