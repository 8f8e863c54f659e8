// A tiny random-weight CLIP/LLaVA-style projector (mmproj GGUF, projector type "mlp") that llama.cpp's
// tools/mtmd/clip.cpp loads: the TypeScript port of ../shared/tools/make_tiny_mmproj.py.
// Image 64 px, patch 16 => 16 patches => 16 image tokens, each `nEmbdText` floats.
// projector "gemma3": a SigLIP tower, patches average-pooled by scaleFactor (2 => 4 image tokens),
// RMS norm and a projection; its images are evaluated with causal attention off.
// projector "idefics3" (SmolVLM): the SigLIP tower per 64 px tile, pixel-shuffled 2×2 (4 tokens a
// tile); a picture becomes 2×2 tiles and an overview, five image chunks with text between, whose
// marker tokens (<fake_token_around_image>, <global-img>, "\n\n") the text model must have.
// projector "qwen2.5vl_merger": Qwen2.5-VL's tower (two patch embeddings, biased attention with 2-D
// rotary positions, window attention in every other layer, SiLU-gated FFN) and its 2×2 patch merger;
// images are resized to multiples of 32 px with at least 8 tokens, and positioned by M-RoPE when the
// text model uses it (makeTinyLlama's arch "qwen2vl"). Load it with warmup off: clip's warmup image
// for it is 46×46 tokens.
import { writeFileSync } from "node:fs";
import { GgmlType, GgufWriter } from "./GgufWriter.js";
import { makeRng } from "./makeTinyLlama.js";

export interface TinyMmprojOptions {
    /** Default "mlp" (llava). */
    projector?: "mlp" | "gemma3" | "qwen2.5vl_merger" | "idefics3";
    /** gemma3: the side of the pooling window; idefics3: of the pixel shuffle (clip.vision.projector.scale_factor). Default 2. */
    scaleFactor?: number;
    /** PRNG seed; the same options always produce a byte-identical file. Default 42. */
    seed?: number;
    /** The text model's embedding size (makeTinyLlama's nEmbd, 128 by default): clip.cpp refuses a mismatch. */
    nEmbdText?: number;
    imageSize?: number;
    patchSize?: number;
    /** Vision width. */
    nEmbd?: number;
    /** Keep it != nEmbd: clip.cpp swaps ffn up/down when ffn_down's rows equal the width (old llava files). */
    nFf?: number;
    /** llava runs nLayer - 1 blocks, but clip.cpp loads (and needs) the weights of all of them. */
    nLayer?: number;
    nHead?: number;
    mmHidden?: number;
    classEmbd?: boolean;
    /** Keys or tensor names to leave out (to probe what is required). */
    omit?: readonly string[];
    /** Written as clip.projector_type instead of `projector` (the weights stay those of `projector`). */
    typeName?: string;
    /** Zero vectors of the vision width to add under these names (to probe what clip.cpp refuses). */
    extraTensors?: readonly string[];
    weightType?: "f32" | "f16";
}

/** The number of image tokens the tiny projector gives an image (one per patch). */
export const tinyMmprojImageTokens = (o: TinyMmprojOptions = {}): number =>
    ((o.imageSize ?? 64) / (o.patchSize ?? 16) / (o.projector === "gemma3" ? (o.scaleFactor ?? 2) : 1)) ** 2;

/** qwen2.5vl_merger: tokens for a square picture of `side` px (resized to a multiple of 32 px, at least 8 tokens). */
export const tinyQwenImageTokens = (side: number): number => Math.max(3, Math.round(side / 32)) ** 2;

/** Builds the file in memory; returns its bytes and the keys and tensor names written (for tests that leave each out in turn). */
export function buildTinyMmproj(opts: TinyMmprojOptions = {}): { bytes: Uint8Array; keys: string[]; tensors: string[] } {
    const {
        seed = 42, nEmbdText: T = 128, imageSize: S = 64, patchSize: P = 16, nEmbd: E = 32, nFf: FF = 64, nLayer: L = 2, nHead: H = 2,
        mmHidden = 64, classEmbd: wantClass = true, omit = [], extraTensors = [], weightType = "f32", projector = "mlp", scaleFactor = 2,
    } = opts;
    const gemma = projector === "gemma3";
    const qwen = projector === "qwen2.5vl_merger";
    const idefics = projector === "idefics3";
    const siglip = gemma || idefics;
    const classEmbd = wantClass && !siglip && !qwen;
    const skip = new Set(omit);
    const nPatches = (S / P) ** 2;
    const nPos = nPatches + (classEmbd ? 1 : 0);
    const rng = makeRng(seed);
    const w = new GgufWriter();
    const tensors: string[] = [];
    const keys: string[] = [];
    const W = weightType === "f16" ? GgmlType.F16 : GgmlType.F32;

    const randn = (n: number, scale: number): Float32Array => {
        const a = new Float32Array(n);
        for (let i = 0; i < n; i++) a[i] = Math.fround(rng.normal() * scale);
        return a;
    };
    // numpy (out, in) => ggml ne [in, out]
    const mat = (name: string, out: number, inp: number, scale = 1 / Math.sqrt(inp)) => ten(name, [inp, out], randn(out * inp, scale), W);
    const vec = (name: string, n: number, scale = 0.02) => ten(name, [n], randn(n, scale), GgmlType.F32);
    const fill = (name: string, n: number, v: number) => ten(name, [n], new Float32Array(n).fill(v), GgmlType.F32);
    function ten(name: string, ne: number[], values: Float32Array, type: GgmlType): void {
        // Values are drawn even for an omitted tensor, so the others keep their weights.
        if (skip.has(name)) return;
        w.addTensor(name, ne, values, type);
        tensors.push(name);
    }
    const kv = (key: string, add: () => void) => {
        if (skip.has(key)) return;
        add();
        keys.push(key);
    };

    kv("general.architecture", () => w.addString("general.architecture", "clip"));
    kv("general.name", () => w.addString("general.name", "tiny-random-mmproj"));
    kv("general.file_type", () => w.addUint32("general.file_type", weightType === "f16" ? 1 : 0));
    kv("clip.has_vision_encoder", () => w.addBool("clip.has_vision_encoder", true));
    kv("clip.projector_type", () => w.addString("clip.projector_type", opts.typeName ?? projector));
    if (siglip) kv("clip.vision.projector.scale_factor", () => w.addUint32("clip.vision.projector.scale_factor", scaleFactor));
    // idefics3 resizes the longest side to this, then cuts image_size tiles (+ an overview).
    if (idefics) kv("clip.vision.preproc_image_size", () => w.addUint32("clip.vision.preproc_image_size", 2 * S));
    // Layer 1 (every 2nd) attends to the whole image, layer 0 within windows.
    if (qwen) kv("clip.vision.n_wa_pattern", () => w.addUint32("clip.vision.n_wa_pattern", 2));
    kv("clip.vision.image_size", () => w.addUint32("clip.vision.image_size", S));
    kv("clip.vision.patch_size", () => w.addUint32("clip.vision.patch_size", P));
    kv("clip.vision.embedding_length", () => w.addUint32("clip.vision.embedding_length", E));
    kv("clip.vision.feed_forward_length", () => w.addUint32("clip.vision.feed_forward_length", FF));
    kv("clip.vision.block_count", () => w.addUint32("clip.vision.block_count", L));
    kv("clip.vision.attention.head_count", () => w.addUint32("clip.vision.attention.head_count", H));
    kv("clip.vision.attention.layer_norm_epsilon", () => w.addFloat32("clip.vision.attention.layer_norm_epsilon", 1e-5));
    kv("clip.vision.projection_dim", () => w.addUint32("clip.vision.projection_dim", T));
    kv("clip.vision.image_mean", () => w.addFloat32Array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073]));
    kv("clip.vision.image_std", () => w.addFloat32Array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711]));
    if (qwen) kv("clip.use_silu", () => w.addBool("clip.use_silu", true));
    else kv("clip.use_gelu", () => w.addBool("clip.use_gelu", siglip));

    for (const name of extraTensors) fill(name, E, 0);
    if (qwen) {
        ten("v.patch_embd.weight", [P, P, 3, E], randn(E * 3 * P * P, 1 / Math.sqrt(3 * P * P)), W);
        ten("v.patch_embd.weight.1", [P, P, 3, E], randn(E * 3 * P * P, 1 / Math.sqrt(3 * P * P)), W);
        for (let i = 0; i < L; i++) {
            const p = `v.blk.${i}.`;
            for (const n of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
                mat(`${p}${n}.weight`, E, E);
                vec(`${p}${n}.bias`, E);
            }
            fill(`${p}ln1.weight`, E, 1);
            fill(`${p}ln2.weight`, E, 1);
            for (const n of ["ffn_gate", "ffn_up"]) {
                mat(`${p}${n}.weight`, FF, E);
                vec(`${p}${n}.bias`, FF);
            }
            mat(`${p}ffn_down.weight`, E, FF);
            vec(`${p}ffn_down.bias`, E);
        }
        fill("v.post_ln.weight", E, 1);
        // The merger: 2×2 patches (4E) -> 4E, GELU, -> nEmbdText.
        mat("mm.0.weight", 4 * E, 4 * E);
        vec("mm.0.bias", 4 * E);
        mat("mm.2.weight", T, 4 * E, 4 / Math.sqrt(4 * E));
        vec("mm.2.bias", T);
        return { bytes: w.toBytes(), keys, tensors };
    }
    // The vision tower (weights in the python tool's draw order, so a seed gives the same model).
    ten("v.patch_embd.weight", [P, P, 3, E], randn(E * 3 * P * P, 1 / Math.sqrt(3 * P * P)), W);
    vec("v.patch_embd.bias", E);
    if (classEmbd) vec("v.class_embd", E, 1);
    ten("v.position_embd.weight", [E, nPos], randn(nPos * E, 0.5), GgmlType.F32);
    if (!siglip) {
        fill("v.pre_ln.weight", E, 1);
        fill("v.pre_ln.bias", E, 0);
    }
    for (let i = 0; i < L; i++) {
        const p = `v.blk.${i}.`;
        for (const n of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
            mat(`${p}${n}.weight`, E, E);
            vec(`${p}${n}.bias`, E);
        }
        fill(`${p}ln1.weight`, E, 1);
        fill(`${p}ln1.bias`, E, 0);
        fill(`${p}ln2.weight`, E, 1);
        fill(`${p}ln2.bias`, E, 0);
        mat(`${p}ffn_up.weight`, FF, E);
        vec(`${p}ffn_up.bias`, FF);
        mat(`${p}ffn_down.weight`, E, FF);
        vec(`${p}ffn_down.bias`, E);
    }
    if (idefics) {
        // SigLIP's post-norm, then the pixel shuffle's projection (scale² · E -> nEmbdText).
        fill("v.post_ln.weight", E, 1);
        fill("v.post_ln.bias", E, 0);
        mat("mm.model.fc.weight", T, scaleFactor * scaleFactor * E);
        return { bytes: w.toBytes(), keys, tensors };
    }
    if (gemma) {
        // SigLIP's post-norm, then gemma3's soft-embedding RMS norm and projection (E -> nEmbdText,
        // stored [nEmbdText, E]: clip.cpp transposes it).
        fill("v.post_ln.weight", E, 1);
        fill("v.post_ln.bias", E, 0);
        fill("mm.soft_emb_norm.weight", E, 1);
        ten("mm.input_projection.weight", [T, E], randn(T * E, 4 / Math.sqrt(E)), W);
        return { bytes: w.toBytes(), keys, tensors };
    }
    // The llava MLP projector: mm.0 (E -> mmHidden), GELU, mm.2 (mmHidden -> nEmbdText).
    mat("mm.0.weight", mmHidden, E);
    vec("mm.0.bias", mmHidden);
    mat("mm.2.weight", T, mmHidden, 4 / Math.sqrt(mmHidden));
    vec("mm.2.bias", T);
    return { bytes: w.toBytes(), keys, tensors };
}

/** Writes a tiny mmproj GGUF to `path`, synchronously; returns the tensor names written. */
export function makeTinyMmproj(path: string, opts: TinyMmprojOptions = {}): string[] {
    const { bytes, tensors } = buildTinyMmproj(opts);
    writeFileSync(path, bytes);
    return tensors;
}
