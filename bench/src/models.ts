// The benchmark's models, generated (seeded random weights) with the repo's TypeScript GGUF writer.
import fs from "node:fs";
import path from "node:path";
import { CHATML_TEMPLATE, makeTinyLlama, type TinyLlamaOptions } from "@nanollm/test/dist/gguf/makeTinyLlama.js";
import { makeTinyMmproj, tinyMmprojImageTokens, type TinyMmprojOptions } from "@nanollm/test/dist/gguf/makeTinyMmproj.js";
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

/**
 * A llava-style projector (mlp) for the named model, sized so encoding costs what a small real one
 * does: 224 px at patch 14 (256 image tokens), a 384-wide tower of 6 blocks, f16 weights.
 */
export function benchMmproj(name: ModelName): { file: string; imageTokens: number } {
  const opts: TinyMmprojOptions = { nEmbdText: PRESETS[name].nEmbd, imageSize: 224, patchSize: 14, nEmbd: 384, nFf: 1536, nLayer: 6, nHead: 6, mmHidden: 768, weightType: "f16", seed: 4321 };
  const file = path.join(MODELS_DIR, `random-mmproj-${name}-224.gguf`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(MODELS_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    makeTinyMmproj(tmp, opts);
    fs.renameSync(tmp, file);
    process.stderr.write(`bench: wrote ${path.relative(process.cwd(), file)} (${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB)\n`);
  }
  return { file, imageTokens: tinyMmprojImageTokens(opts) };
}
