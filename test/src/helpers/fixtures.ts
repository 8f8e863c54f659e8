import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHATML_TEMPLATE, makeTinyLlama, type TinyLlamaOptions } from "../gguf/makeTinyLlama.js";
import { makeTinyMmproj, type TinyMmprojOptions } from "../gguf/makeTinyMmproj.js";

/** test/fixtures/models, where `make fixtures` writes the generated GGUF files. */
export const FIXTURE_DIR = fileURLToPath(new URL("../../fixtures/models/", import.meta.url));

/** The default test model (chat-ml metadata, seeded random weights), generated if missing. */
export function tinyModel(name = "tiny-chatml", seed = 1, extra: Partial<TinyLlamaOptions> = {}): string {
  const file = path.join(FIXTURE_DIR, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(FIXTURE_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    makeTinyLlama(tmp, { seed, name, chatTemplate: CHATML_TEMPLATE, contextLength: 32768, ...extra });
    fs.renameSync(tmp, file);
  }
  return file;
}

/**
 * The tiny image projector (mmproj, llava "mlp") for tinyModel(): its image tokens are 128 floats,
 * the tiny text model's embedding size. Generated if missing.
 */
export function tinyMmproj(name = "tiny-mmproj", opts: TinyMmprojOptions = {}): string {
  const file = path.join(FIXTURE_DIR, `${name}.gguf`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(FIXTURE_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    makeTinyMmproj(tmp, opts);
    fs.renameSync(tmp, file);
  }
  return file;
}

/** A Gemma-3-style tiny projector: 4 image tokens per image, evaluated with causal attention off. */
export const tinyGemma3Mmproj = () => tinyMmproj("tiny-mmproj-gemma3", { projector: "gemma3" });

/** The tiny model's weights under Qwen2-VL's architecture: M-RoPE positions (4 sections). */
export const tinyQwen2vlModel = () => tinyModel("tiny-qwen2vl", 1, { arch: "qwen2vl" });

/** A Qwen2.5-VL-style tiny projector (load it with warmup off: clip's warmup image for it is 46×46 tokens). */
export const tinyQwen25vlMmproj = () => tinyMmproj("tiny-mmproj-qwen25vl", { projector: "qwen2.5vl_merger" });

/** The tiny model with the marker tokens SmolVLM's (idefics3) image slices are wrapped in. */
export const tinyIdefics3Model = () => tinyModel("tiny-idefics3", 1, { extraControlTokens: ["<fake_token_around_image>", "<global-img>", "\n\n"] });

/** A SmolVLM-style (idefics3) tiny projector: 2×2 tiles and an overview per picture, 4 tokens each. */
export const tinyIdefics3Mmproj = () => tinyMmproj("tiny-mmproj-idefics3", { projector: "idefics3" });

/** A model that ends every reply with EOS at once under greedy decoding. */
export const eosEagerModel = () => tinyModel("tiny-eos-eager", 1, { eosEager: true });

/** A model whose greedy replies open a tool call (<tool_call>) whenever they may. */
export const toolEagerModel = () => tinyModel("tiny-tool-eager", 1, { eagerToken: "<tool_call>" });

const made: string[] = [];

/** A fresh temporary folder for one test file; removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? "/tmp"), `nanollm-${prefix}-`));
  if (made.push(dir) === 1) process.once("exit", removeTempDirs);
  return dir;
}

function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
