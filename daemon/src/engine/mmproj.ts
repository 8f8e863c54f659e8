import fs from "node:fs";
import path from "node:path";
import { fail } from "@nanollm/shared";
import { readGgufHeader, type GgufHeader } from "./ggufHeader.js";

// An image projector (mmproj GGUF) is checked here before clip.cpp sees it: clip.cpp's loader marks
// many tensors optional that its graphs then use unconditionally, so a file missing one crashes the
// process (a null tensor in ggml) instead of failing. What each projector type needs was read from
// tools/mtmd/clip.cpp (load_hparams, load_tensors, clip_n_mmproj_embd) and its graphs
// (models/llava.cpp, models/siglip.cpp, models/qwen2vl.cpp, build_inp/build_vit); for each type
// below, test/src/mtmd.test.ts removes each key and tensor of a tiny generated file in turn and
// proves the list: everything this refuses, and nothing it lets through crashes clip.

/** Keys clip.cpp's load_hparams reads without a default for any vision projector. */
const VISION_KEYS = [
  "clip.vision.image_size",
  "clip.vision.patch_size",
  "clip.vision.embedding_length",
  "clip.vision.feed_forward_length",
  "clip.vision.block_count",
  "clip.vision.attention.head_count",
  "clip.vision.attention.layer_norm_epsilon",
  "clip.vision.projection_dim",
  "clip.vision.image_mean",
  "clip.vision.image_std",
];

interface Needs {
  keys?: string[];
  tensors: string[];
  /** The ViT's layers: attention (fused qkv or q, k and v), its output and the FFN, for every block. */
  vitLayers: boolean;
  /** More tensors every block needs ("%d" is the block). */
  layerTensors?: string[];
  /** Tensors the graph refuses with an assertion (which aborts the process). */
  forbidden?: string[];
}

const QWEN_VL: Needs = {
  tensors: ["v.patch_embd.weight", "v.patch_embd.weight.1", "mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"],
  vitLayers: true,
  // models/qwen2vl.cpp adds the q, k and v biases unconditionally.
  layerTensors: ["v.blk.%d.attn_q.bias", "v.blk.%d.attn_k.bias", "v.blk.%d.attn_v.bias"],
  forbidden: ["v.patch_embd.bias", "v.class_embd"],
};

const NEEDS: Record<string, Needs> = {
  // llava 1.5/1.6, BakLLaVA, ...: models/llava.cpp; clip_n_mmproj_embd reads mm.2.weight.
  mlp: { tensors: ["v.patch_embd.weight", "v.position_embd.weight", "mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"], vitLayers: true },
  // Gemma 3: models/siglip.cpp.
  gemma3: { tensors: ["v.patch_embd.weight", "mm.input_projection.weight", "mm.soft_emb_norm.weight"], vitLayers: true },
  // SmolVLM / Idefics3: models/siglip.cpp; without a scale factor the pixel shuffle asserts.
  idefics3: { keys: ["clip.vision.projector.scale_factor"], tensors: ["v.patch_embd.weight", "mm.model.fc.weight"], vitLayers: true },
  // Qwen2-VL / Qwen2.5-VL: models/qwen2vl.cpp (two patch embeddings for the temporal pair).
  qwen2vl_merger: QWEN_VL,
  "qwen2.5vl_merger": { ...QWEN_VL, keys: ["clip.vision.n_wa_pattern"] },
};

/** Projector types checked in full; others get the generic checks only. */
export const CHECKED_PROJECTORS = Object.keys(NEEDS);

function sentence(file: string, what: string): Error {
  return fail.invalid(`The projector ${file} ${what}; download or convert the model's mmproj file again.`);
}

/** The projector type a file declares, or undefined. */
export function projectorType(h: GgufHeader): string | undefined {
  const t = h.keys.get("clip.projector_type") ?? h.keys.get("clip.vision.projector_type");
  return typeof t === "string" ? t : undefined;
}

/**
 * Throws fail.invalid with one sentence naming the first missing key or tensor clip.cpp needs, or
 * the reason the file is not an image projector; returns its header when it may be loaded.
 */
export function checkMmprojHeader(file: string, h: GgufHeader): GgufHeader {
  const arch = h.keys.get("general.architecture");
  if (typeof arch === "string" && arch !== "clip") throw fail.invalid(`${file} is a ${arch} model, not an image projector; pass the model's mmproj file (general.architecture clip).`);
  if (h.keys.get("clip.has_vision_encoder") !== true) {
    throw sentence(file, h.keys.get("clip.has_audio_encoder") === true ? "has no vision encoder (audio only), so it cannot read images" : "lacks the key clip.has_vision_encoder (true) that clip.cpp needs to read images");
  }
  const type = projectorType(h);
  if (type === undefined) throw sentence(file, "lacks the key clip.projector_type that clip.cpp needs");
  const needs: Needs = NEEDS[type] ?? { tensors: ["v.patch_embd.weight"], vitLayers: true };
  const of = NEEDS[type] ? ` for projector type ${type}` : "";
  for (const key of [...VISION_KEYS, ...(needs.keys ?? [])]) if (!h.keys.has(key)) throw sentence(file, `lacks the key ${key} that clip.cpp needs${of}`);
  for (const key of ["clip.vision.image_mean", "clip.vision.image_std"]) {
    const v = h.keys.get(key);
    if (!Array.isArray(v) || v.length < 3) throw sentence(file, `has ${key} with fewer than 3 values (one per color)`);
  }
  const blocks = Number(h.keys.get("clip.vision.block_count"));
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > 1024) throw sentence(file, `has clip.vision.block_count ${String(h.keys.get("clip.vision.block_count"))}, which is not a layer count`);
  const missing = (name: string) => (h.tensors.has(name) ? undefined : name);
  const missingTensor = (names: string[]) => names.map(missing).find((n) => n !== undefined);
  let lack = missingTensor(needs.tensors);
  if (!lack && needs.vitLayers && type !== "gemma3nv") {
    for (let i = 0; i < blocks && !lack; i++) {
      const p = `v.blk.${i}.`;
      const attention = h.tensors.has(`${p}attn_qkv.weight`) ? [] : [`${p}attn_q.weight`, `${p}attn_k.weight`, `${p}attn_v.weight`];
      const ffn = h.tensors.has(`${p}ffn_gate_exps.weight`) ? [] : [`${p}ffn_up.weight`, `${p}ffn_down.weight`];
      lack = missingTensor([...attention, `${p}attn_out.weight`, ...ffn, ...(needs.layerTensors ?? []).map((t) => t.replace("%d", String(i)))]);
    }
  }
  if (lack) throw sentence(file, `lacks the tensor ${lack} that clip.cpp needs${of}`);
  const extra = needs.forbidden?.find((t) => h.tensors.has(t));
  if (extra) throw sentence(file, `has the tensor ${extra}, which clip.cpp does not accept${of}`);
  return h;
}

/** Reads and checks `file` (see checkMmprojHeader); a missing or non-GGUF file is one sentence too. */
export function checkMmproj(file: string): GgufHeader {
  if (!fs.existsSync(file)) throw fail.notFound(`The projector ${file} does not exist; pass the path of the model's mmproj .gguf file.`);
  let h: GgufHeader;
  try {
    h = readGgufHeader(file);
  } catch (err) {
    throw fail.invalid(`${file} is not a readable GGUF file (${(err as Error).message}); pass the model's mmproj .gguf file.`);
  }
  return checkMmprojHeader(file, h);
}

/**
 * The projector beside a model file, as llama.cpp's model repositories ship them (mmproj*.gguf in
 * the same folder): the only one, or among several the one sharing the longest run of the model's
 * name (mmproj-gemma-3-4b-it-f16.gguf for gemma-3-4b-it-Q4_K_M.gguf); undefined when none fits.
 */
export function mmprojBeside(modelFile: string): string | undefined {
  const dir = path.dirname(modelFile);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => /^mmproj.*\.gguf$/i.test(n) && path.join(dir, n) !== modelFile);
  } catch {
    return undefined;
  }
  if (names.length <= 1) return names[0] === undefined ? undefined : path.join(dir, names[0]);
  // Names compared without their precision (Q4_K_M, f16, ...), which model and projector rarely share.
  const bare = (name: string) => name.toLowerCase().replace(/\.gguf$/, "").replace(/[-_.]((i?q\d\w*)|f16|f32|bf16)$/, "");
  const stem = bare(path.basename(modelFile));
  const shared = (name: string) => {
    const n = bare(name).replace(/^mmproj[-_.]?/, "");
    let best = 0;
    for (let i = 0; i < stem.length; i++) for (let j = i + best + 1; j <= stem.length && n.includes(stem.slice(i, j)); j++) best = j - i;
    return best;
  };
  const scored = names.map((n) => ({ n, score: shared(n) })).sort((a, b) => b.score - a.score);
  const [first, second] = scored;
  return first && first.score >= 4 && (!second || second.score < first.score) ? path.join(dir, first.n) : undefined;
}
