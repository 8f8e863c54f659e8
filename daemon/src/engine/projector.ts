import path from "node:path";
import { fileURLToPath } from "node:url";
import { fail, NanoError } from "@nanollm/shared";
import { checkMmproj } from "./mmproj.js";
import { probeProjector } from "./probeProjector.js";
import { nativeAddon, type LoadedLibrary, type NativeModel, type Variant } from "./native.js";

// Images through the addon's mtmd part (daemon/native/src/Mtmd.h): llama.cpp's multimodal library,
// built by daemon/native/mtmd.mjs for each installed variant, and a projector (mmproj) per model.

/** An image chunk from tokenize(), for encode(); it keeps mtmd's preprocessed image. */
export type NativeImageChunk = { readonly __brand: "NativeImageChunk" };

/** Encoded image tokens; the loop evaluates them (native evalImageChunk). */
export interface NativeImageEmbedding {
  /** A copy of the nTokens × nEmbd floats. */
  values(): Float32Array;
}

export type ProjectorChunk =
  | { kind: "text"; tokens: Int32Array }
  | {
      kind: "image" | "audio";
      /** KV cells the chunk takes. */
      nTokens: number;
      /** Positions the sequence advances by (nTokens, except under M-RoPE). */
      nPos: number;
      /** mtmd's id: the SHA-256 of the image file's bytes. */
      id: string;
      chunk: NativeImageChunk;
    };

export interface ImageFacts {
  width: number;
  height: number;
  bytes: number;
  id: string;
}

export interface EncodedImage {
  embd: NativeImageEmbedding;
  nTokens: number;
  nEmbd: number;
  nPos: number;
  /** Positions are 4-D (Qwen-VL); the loop lays them out per mtmd's decoder positions. */
  mrope: boolean;
  /** Evaluated with causal attention off, the whole image in one batch (Gemma 3). */
  nonCausal: boolean;
  id: string;
  /** Wall time of clip's encode. */
  ms: number;
}

export interface ProjectorInfo {
  vision: boolean;
  audio: boolean;
  /** The marker that stands for one image in tokenize()'s text (mtmd's default: <__media__>). */
  marker: string;
  embeddingSize: number;
  mrope: boolean;
  nonCausal: boolean;
}

export interface NativeProjector {
  info(): ProjectorInfo;
  /**
   * Splits `text` at its markers into text and image chunks, one marker per image (off the JS
   * thread: images are decoded and resized here). parseSpecial (default true) lets the text form
   * control tokens; addSpecial (default false) adds BOS; an image of more than maxPixels (default
   * 64 Mi) is refused from its header, before it is decoded.
   */
  tokenize(text: string, images: Uint8Array[], opts?: { addSpecial?: boolean; parseSpecial?: boolean; maxPixels?: number }): Promise<{ chunks: ProjectorChunk[]; images: ImageFacts[] }>;
  /** Runs the vision encoder on one image chunk (a worker thread; one encode at a time per projector). */
  encode(chunk: NativeImageChunk): Promise<EncodedImage>;
  /** Idempotent; the model may be disposed once its projectors are. */
  dispose(): void;
}

interface MtmdAddon {
  loadMtmd(libPath: string): void;
  /** Loads a projector without a text model, graph built, and frees it: "" or clip's reason (may crash the process). */
  probeProjector(file: string): string;
  loadProjector(file: string, model: NativeModel, opts: { gpu: boolean; threads: number; warmup?: boolean }): Promise<NativeProjector>;
  /** Logits after `before`, the image (in pieces of nBatch tokens) and `after` in a fresh context: evalImageChunk's test. */
  evalImageForTest(model: NativeModel, embd: NativeImageEmbedding, before: Int32Array, after: Int32Array, nBatch?: number): Float32Array;
  /** The same through mtmd's own mtmd_helper_eval_chunk_single (encode + decode): the oracle for evalImageChunk. */
  evalImageReferenceForTest(model: NativeModel, projector: NativeProjector, chunk: NativeImageChunk, before: Int32Array, after: Int32Array, nBatch?: number): Float32Array;
}

/** The addon's image functions. */
export function mtmdAddon(): MtmdAddon {
  return nativeAddon() as unknown as MtmdAddon;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const LIBS = path.resolve(here, "../../native/build-mtmd/lib");

/** The image library mtmd.mjs linked for a variant (named after the variant's folder). */
export function imageLibraryFor(variant: Variant): string {
  const name = variant.binary === "native" ? `local-${path.basename(path.dirname(variant.dir))}` : path.basename(variant.dir);
  return path.join(LIBS, name, "libnanollm-mtmd.so");
}

/**
 * Loads the projector `file` for `model`. clip.cpp crashes the process on a malformed file, so its
 * keys and tensors are checked first (one sentence naming what is missing), then a throwaway process
 * loads it (probeProjector; `probe: false` skips that), then the variant's image library and clip
 * here. `threads` run the vision encoder; `warmup` (default true) builds clip's graph and allocates
 * its buffers at load, where a malformed file would otherwise crash at its first image.
 */
export async function loadProjector(
  file: string,
  model: NativeModel,
  library: LoadedLibrary,
  opts: { threads: number; warmup?: boolean; probe?: boolean },
): Promise<NativeProjector> {
  checkMmproj(file);
  if (opts.probe !== false) await probeProjector(file);
  try {
    mtmdAddon().loadMtmd(imageLibraryFor(library.variant));
  } catch (err) {
    throw fail.precondition(`Image input is unavailable: ${(err as Error).message}`);
  }
  try {
    return await mtmdAddon().loadProjector(file, model, { gpu: library.gpu, threads: opts.threads, warmup: opts.warmup });
  } catch (err) {
    if (err instanceof NanoError) throw err;
    throw fail.invalid(`The projector ${file} could not be loaded (${(err as Error).message}); check that it is the mmproj file made for this model.`);
  }
}
