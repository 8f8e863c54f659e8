import fs from "node:fs";
import path from "node:path";
import { readGgufHeader, type GgufValue } from "../engine/ggufHeader.js";
import { kvCacheBytes } from "../engine/kvBytes.js";
import { mmprojBeside } from "../engine/mmproj.js";
import { modelShape, type LoadSettings } from "../engine/ModelHost.js";
import { quantization } from "./quantization.js";

/** A model file of the models folder, as its GGUF header describes it. */
export interface LocalFile {
  name: string;
  file: string;
  sizeBytes: number;
  quantization: string;
  architecture: string;
  /** The context length the model was trained for (0: not given). */
  contextLength: number;
  /** A projector beside it (the model takes images). */
  mmproj: string | undefined;
  /** Metadata that sizes the KV cache, as text. */
  meta: (key: string) => string | undefined;
}

/** A model's name: its file name without .gguf. */
export const modelName = (file: string) => path.basename(file).replace(/\.gguf$/i, "");

const isModelFile = (name: string) => /\.gguf$/i.test(name) && !/^mmproj/i.test(name) && !name.endsWith(".part");

/**
 * The models folder's model files: NAME.gguf at its top, and in its subfolders (one per pulled
 * repository, so each model finds its own projector beside it). Projectors are not models.
 */
export function modelFiles(dir: string | undefined): string[] {
  if (!dir || !fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isFile() && isModelFile(entry.name)) out.push(path.join(dir, entry.name));
    if (!entry.isDirectory()) continue;
    const sub = path.join(dir, entry.name);
    for (const inner of fs.readdirSync(sub, { withFileTypes: true })) if (inner.isFile() && isModelFile(inner.name)) out.push(path.join(sub, inner.name));
  }
  return out.sort();
}

/** The folder's file of that name, if any. */
export function findModelFile(dir: string | undefined, name: string): string | undefined {
  return modelFiles(dir).find((f) => modelName(f) === name);
}

/** Reads a model file's header; undefined when it is not a readable GGUF (left out of listings, with the reason logged). */
export function describeFile(file: string, log: (line: string) => void): LocalFile | undefined {
  let keys: Map<string, GgufValue>;
  let quant: string;
  try {
    const h = readGgufHeader(file);
    keys = h.keys;
    quant = quantization(h);
  } catch (err) {
    log(`${file} is left out of the models list: ${(err as Error).message}`);
    return undefined;
  }
  const meta = (key: string) => {
    const v = keys.get(key);
    return v === undefined ? undefined : Array.isArray(v) ? v.slice(0, 4096).join(",") : String(v);
  };
  const arch = meta("general.architecture") ?? "unknown";
  return {
    name: modelName(file),
    file,
    sizeBytes: fs.statSync(file).size,
    quantization: quant,
    architecture: arch,
    contextLength: Number(meta(`${arch}.context_length`) ?? 0),
    mmproj: mmprojBeside(file),
    meta,
  };
}

/** Bytes the model would take loaded with `settings`: weights, projector and KV cache. */
export function estimateBytes(f: LocalFile, settings: Required<LoadSettings>): number {
  const ctx = f.contextLength > 0 ? Math.min(settings.ctx, f.contextLength) : settings.ctx;
  const projector = f.mmproj ? (fs.statSync(f.mmproj, { throwIfNoEntry: false })?.size ?? 0) : 0;
  return f.sizeBytes + projector + kvCacheBytes(modelShape(f.meta), ctx * settings.parallel, settings.kvCacheType);
}
