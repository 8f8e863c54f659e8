import { Command } from "commander";
import { loadDaemon } from "./loadDaemon.js";
import { DEFAULT_MODEL_URI, readEnv } from "@nanollm/shared";

export function pullCommand(): Command {
  return new Command("pull")
    .description("fetch a model once into the models folder (with progress) and print its path")
    .argument("[model]", "hf: URI, URL or local path", DEFAULT_MODEL_URI)
    .action(async (model: string) => {
      const { resolveModel } = await loadDaemon("pull");
      process.stdout.write(`${await resolveModel(model, readEnv().modelsDir)}\n`);
    });
}
