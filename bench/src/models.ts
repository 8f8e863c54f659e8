// The benchmark's models, generated (seeded random weights) with the repo's TypeScript GGUF writer.
import fs from "node:fs";
import path from "node:path";
import { CHATML_TEMPLATE, makeTinyLlama, type TinyLlamaOptions } from "@nanollm/test/dist/gguf/makeTinyLlama.js";
import { MODELS_DIR } from "./paths.js";

export type ModelName = "big" | "tiny";

// The shapes of ../shared/tools/make_tiny_gguf.py's presets ("big": 768d, 12 layers, ~114M params).
// The context length is 4096 rather than the preset's 2048 because P2's 20-turn chat and P4's
// 2k-token session need more than 2048 cells; it changes no weight.
const PRESETS: Record<ModelName, TinyLlamaOptions> = {
  big: { nEmbd: 768, nLayer: 12, nHead: 12, nHeadKv: 12, nFf: 3072, contextLength: 4096, weightType: "q8_0", seed: 1234 },
  tiny: { nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 128, contextLength: 4096, weightType: "f32", seed: 1234 },
};

/** Path of the named benchmark model, writing it first if it is not there yet. */
export function benchModel(name: ModelName): string {
  const opts = PRESETS[name];
  const file = path.join(MODELS_DIR, `random-llama-${name}-${opts.weightType}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(MODELS_DIR, { recursive: true });
  const started = performance.now();
  process.stderr.write(`bench: writing ${path.relative(process.cwd(), file)} ...\n`);
  const tmp = `${file}.${process.pid}.tmp`;
  makeTinyLlama(tmp, { ...opts, name: `random-llama-${name}`, chatTemplate: CHATML_TEMPLATE });
  fs.renameSync(tmp, file);
  const mib = fs.statSync(file).size / 2 ** 20;
  process.stderr.write(`bench: wrote ${mib.toFixed(1)} MiB in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  return file;
}
