import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { fail } from "@nanollm/shared";
import type { GpuChoice } from "./types.js";

// The addon (daemon/native, C++): llama.cpp loaded by path from node-llama-cpp's prebuilt
// libraries, models, and contexts whose decode loop runs on their own thread.

export interface NativeModelInfo {
  vocabSize: number;
  bos: number;
  eos: number;
  eot: number;
  addBos: boolean;
  trainContextSize: number;
  embeddingSize: number;
  parameters: number;
  sizeBytes: number;
  recurrent: boolean;
  eog: Int32Array;
}

export interface NativeModel {
  info(): NativeModelInfo;
  meta(key: string): string | undefined;
  tokenize(text: string, special: boolean): Int32Array;
  detokenize(ids: Int32Array, special: boolean): string;
  /** Compiles GBNF (throws Error with llama.cpp's reason); every use gets a fresh state. */
  grammar(gbnf: string): NativeGrammar;
  createContext(opts: { ctx: number; seqs: number; batch: number; threads: number; batchThreads: number; adaptiveThreads: boolean; adaptiveBatchThreads: boolean; kvCacheType: string; onEvents: (events: LoopEvent[]) => void }): Promise<NativeContext>;
  dispose(): void;
}

export type NativeGrammar = { readonly __brand: "NativeGrammar" };

/** A job's new tokens and/or its end, or a finished KV operation. */
export interface LoopEvent {
  id: number;
  tokens: Int32Array;
  /** "" while a reply goes on; done|eog|max|ctx|cancelled|error for jobs; ok|error for operations. */
  end: "" | "done" | "eog" | "max" | "ctx" | "cancelled" | "error" | "ok";
  error?: string;
  value: number;
}

export interface NativeSampling {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  seed: number;
  minNewTokens: number;
}

export interface NativeContext {
  submit(job: { seq: number; tokens: Int32Array; images?: { offset: number; embedding: unknown }[]; sample: boolean; lockstep?: boolean; maxSamples?: number; sampling?: NativeSampling; grammar?: NativeGrammar; history?: Int32Array }): number;
  resume(id: number, tokens: Int32Array | null, grammar?: NativeGrammar): void;
  cancel(id: number): void;
  op(kind: "erase" | "clear" | "save" | "load", seq: number, from: number, file?: string): number;
  cached(seq: number): Int32Array;
  cachedLength(seq: number): number;
  info(): { contextSize: number; sequences: number; threadpool: boolean };
  stats(): { decodes: number; tokens: number; decodeMs: number; steps: number; carried: number; images: number; stepThreads: number; batchThreads: number };
  dispose(): void;
}

interface Addon {
  loadLibrary(llama: string, ggml: string, dir: string, cpuBackend: string): { systemInfo: string; devices: { name: string; type: string }[]; threadpool: boolean; ownCpu: boolean };
  loadModel(file: string, opts: { gpuLayers: number }, onProgress?: (p: number) => void): Promise<NativeModel>;
  /** The loop's thread-count policy driven by a script, for unit tests. */
  threadChoiceTrace(candidates: number[], alpha: number, explore: number, steps: (["record", number, number, number] | ["pick", number])[]): number[];
  /** The loop's batch plan, for unit tests: [[seq, count]] in batch order. */
  planRound(items: { seq: number; left: number }[], size: number): [number, number][];
  /** The loop's decode-cost policy driven by a script, for unit tests. */
  decodeCostsTrace(alpha: number, explore: number, steps: (["record", number, number] | ["split", number] | ["estimate", number])[]): (boolean | number)[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
// NANOLLM_ADDON picks another build of it (make test-asan's sanitized one).
const ADDON = process.env.NANOLLM_ADDON ?? path.resolve(here, "../../native/build/Release/nanollm.node");

let addon: Addon | undefined;

/** The addon module; a missing build is one sentence, not a stack trace. */
export function nativeAddon(): Addon {
  if (addon) return addon;
  if (!fs.existsSync(ADDON)) throw fail.unavailable(`The engine addon ${ADDON} is not built; run 'make build' (or 'npm ci').`);
  addon = createRequire(import.meta.url)(ADDON) as Addon;
  return addon;
}

/** One llama.cpp variant's libraries. */
export interface Variant {
  /** cpu, cuda, vulkan or metal. */
  backend: Exclude<GpuChoice, "auto">;
  /** "prebuilt" (node-llama-cpp's npm packages) or "native" (`make native`). */
  binary: "prebuilt" | "native";
  dir: string;
  llama: string;
  ggml: string;
  /** The CPU backend built here (native/cpu.mjs: libggml-cpu-<cpu variant>.so), used in place of the folder's when this CPU runs it. */
  cpuBackend?: string;
}

/** Finds a folder's libllama and libggml (their names carry the variant: libllama.cuda.v0.5.0.so). */
export function variantIn(dir: string, backend: Variant["backend"], binary: Variant["binary"]): Variant | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const files = fs.readdirSync(dir);
  const ext = process.platform === "darwin" ? "dylib" : process.platform === "win32" ? "dll" : "so";
  const pick = (base: string) => files.find((f) => new RegExp(`^(lib)?${base}(\\.[\\w.]+)?\\.${ext}$`).test(f) && !/common|base/.test(f));
  const llama = pick("llama");
  const ggml = pick("ggml");
  if (!llama || !ggml) return undefined;
  return { backend, binary, dir, llama: path.join(dir, llama), ggml: path.join(dir, ggml) };
}

function nodeModulesDirs(): string[] {
  const dirs: string[] = [];
  for (let d = here; ; d = path.dirname(d)) {
    const nm = path.join(d, "node_modules");
    if (fs.existsSync(nm)) dirs.push(nm);
    if (path.dirname(d) === d) return dirs;
  }
}

/**
 * The CPU backend `npm ci` built here for the prebuilt CPU variant (the prebuilt one is ~1.7× slower
 * at f16 matrix products); NANOLLM_CPU_BACKEND=prebuilt keeps the prebuilt one, a path names another.
 */
function ownCpuBackend(prebuiltDir: string): string | undefined {
  const choice = process.env.NANOLLM_CPU_BACKEND;
  if (choice === "prebuilt") return undefined;
  if (choice) return path.resolve(choice);
  const dir = path.resolve(here, "../../native/build-cpu/lib");
  try {
    // "<commit> <variant> <prebuilt folder>": only a build linked against these prebuilt libraries.
    const [, variant, ...folder] = fs.readFileSync(path.join(dir, ".built"), "utf8").split(" ");
    const against = folder.join(" ");
    const file = path.join(dir, `libggml-cpu-${variant}.so`);
    return against && path.resolve(against) === path.resolve(prebuiltDir) && fs.existsSync(file) ? file : undefined;
  } catch {
    return undefined; // Not built here.
  }
}

function prebuilt(backend: Variant["backend"]): Variant | undefined {
  const plat = process.platform === "darwin" ? "mac" : process.platform === "win32" ? "win" : "linux";
  const suffix = backend === "cpu" || (backend === "metal" && plat === "mac") ? (plat === "mac" && os.arch() === "arm64" ? "-metal" : "") : `-${backend}`;
  if (backend === "metal" && plat !== "mac") return undefined;
  const name = `${plat}-${os.arch()}${suffix}`;
  for (const nm of nodeModulesDirs()) {
    const v = variantIn(path.join(nm, "@node-llama-cpp", name, "bins", name), backend, "prebuilt");
    if (v) return backend === "cpu" ? { ...v, cpuBackend: ownCpuBackend(v.dir) } : v;
  }
  return undefined;
}

/** `make native`'s build (node-llama-cpp's source compiled here), when there is one. */
function localBuild(): Variant | undefined {
  for (const nm of nodeModulesDirs()) {
    const llamaDir = path.join(nm, "node-llama-cpp", "llama");
    try {
      const last = JSON.parse(fs.readFileSync(path.join(llamaDir, "lastBuild.json"), "utf8")) as { folderName?: string };
      if (!last.folderName) continue;
      const backend = /cuda/.test(last.folderName) ? "cuda" : /vulkan/.test(last.folderName) ? "vulkan" : /metal/.test(last.folderName) ? "metal" : "cpu";
      const v = variantIn(path.join(llamaDir, "localBuilds", last.folderName, "Release"), backend, "native");
      if (v) return v;
    } catch {
      // No local build.
    }
  }
  return undefined;
}

function hasNvidiaDriver(): boolean {
  return fs.existsSync("/proc/driver/nvidia/version") || fs.existsSync("/dev/nvidia0");
}

/** The variants to try for a --gpu choice, best first. */
export function variantsFor(gpu: GpuChoice): Variant[] {
  const local = localBuild();
  const pick = (backend: Variant["backend"]) => [local?.backend === backend ? local : undefined, prebuilt(backend)].filter((v): v is Variant => v !== undefined);
  switch (gpu) {
    case "cpu":
      return pick("cpu");
    case "cuda":
    case "vulkan":
    case "metal":
      return pick(gpu);
    case "auto":
      return [...(local && local.backend !== "cpu" ? [local] : []), ...(hasNvidiaDriver() ? pick("cuda") : []), ...(process.platform === "darwin" ? pick("metal") : []), ...pick("cpu")];
    default:
      return gpu satisfies never;
  }
}

export interface LoadedLibrary {
  variant: Variant;
  systemInfo: string;
  gpu: boolean;
  threadpool: boolean;
  /** The CPU backend in use is the one built here (Variant.cpuBackend). */
  ownCpu: boolean;
}

/** Loads a variant's libraries into this process (llama.cpp stays loaded for the life of the process). */
export function loadVariant(v: Variant): ReturnType<Addon["loadLibrary"]> {
  return nativeAddon().loadLibrary(v.llama, v.ggml, v.dir, v.cpuBackend ?? "");
}

let loaded: LoadedLibrary | undefined;

/**
 * Loads llama.cpp for `gpu` once per process: the first variant that loads wins (`auto` falls back
 * to the CPU); an explicit GPU that cannot load is one sentence naming what is missing.
 */
export function loadLlama(gpu: GpuChoice): LoadedLibrary {
  if (loaded) return loaded;
  const candidates = variantsFor(gpu);
  if (candidates.length === 0) {
    throw fail.precondition(
      gpu === "cpu" || gpu === "auto"
        ? "No llama.cpp libraries were found in node_modules/@node-llama-cpp; run 'make build' (npm ci) to install them."
        : `No ${gpu} build of llama.cpp is installed here (node-llama-cpp's ${gpu} package is missing); use --gpu cpu, or install on a machine with ${gpu}.`,
    );
  }
  const errors: string[] = [];
  for (const variant of candidates) {
    try {
      const info = loadVariant(variant);
      const gpuDevice = info.devices.some((d) => d.type === "gpu" || d.type === "igpu");
      if (variant.backend !== "cpu" && !gpuDevice) {
        errors.push(`${variant.backend}: no ${variant.backend} device was found`);
        // The library is loaded now; a process keeps one variant, so only auto may carry on, on
        // the CPU part of this variant.
        if (gpu !== "auto") break;
      }
      loaded = { variant, systemInfo: info.systemInfo, gpu: gpuDevice, threadpool: info.threadpool, ownCpu: info.ownCpu };
      return loaded;
    } catch (err) {
      errors.push((err as Error).message);
      if (gpu !== "auto") break;
    }
  }
  throw fail.precondition(`llama.cpp could not run with --gpu ${gpu} (${errors.join("; ")}); ${gpu === "cpu" ? "reinstall with 'make build'" : "use --gpu cpu or --gpu auto"}.`);
}
