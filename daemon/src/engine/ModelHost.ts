import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fail } from "@nanollm/shared";
import { ContextLoop } from "./ContextLoop.js";
import { Grammars } from "./Grammars.js";
import { Images } from "./Images.js";
import { mmprojBeside } from "./mmproj.js";
import { loadProjector } from "./projector.js";
import { kvCacheBytes } from "./kvBytes.js";
import { KvSwap } from "./KvSwap.js";
import { loadLlama, nativeAddon, type NativeModel, type NativeModelInfo } from "./native.js";
import { SequencePool } from "./SequencePool.js";
import { Tokenizer } from "./Tokenizer.js";
import type { EngineOptions, GpuChoice, ModelFacts, Segment, Token } from "./types.js";

/** Tokens per llama_decode: a long prompt delays the sessions that are generating by one batch at a time. */
const BATCH = 256;

export interface EngineInfo {
  /** cpu, cuda, vulkan or metal. */
  backend: string;
  /** "prebuilt" (from npm) or "native" (`make native`: built here). */
  binary: string;
  threads: number;
  batchThreads: number;
  /** The counts were not given: each decode runs on 1 or that many threads, whichever measured faster. */
  adaptiveThreads: boolean;
  adaptiveBatchThreads: boolean;
}

/**
 * Loads llama.cpp (the variant for `gpu`) and settles the thread counts: the given ones, else
 * every core, with the loop choosing per kind of decode between 1 thread and all of them by
 * measurement (README "Threads": which wins depends on the model and the machine's other load).
 */
export function startEngine(opts: { gpu: GpuChoice; threads?: number; batchThreads?: number; log: (line: string) => void }): EngineInfo {
  const lib = loadLlama(opts.gpu);
  const cores = os.availableParallelism();
  const threads = opts.threads ?? cores;
  const batchThreads = opts.batchThreads ?? cores;
  const backend = lib.gpu ? lib.variant.backend : "cpu";
  // The prebuilt CPU variant's backend replaced by the one npm ci built here (native/cpu.mjs).
  const binary = lib.ownCpu ? `${lib.variant.binary} + CPU backend built here` : lib.variant.binary;
  return { backend, binary, threads, batchThreads, adaptiveThreads: opts.threads === undefined, adaptiveBatchThreads: opts.batchThreads === undefined };
}

/** What a load made: the native model and its context, and what is built over them. */
interface Loaded {
  model: NativeModel;
  loop: ContextLoop;
  vocab: NativeModelInfo;
  tokenizer: Tokenizer;
  grammars: Grammars;
  images: Images | undefined;
  facts: ModelFacts;
}

/** The settings a model may be (re)loaded with, besides the daemon's. */
export type LoadSettings = Partial<Pick<EngineOptions, "ctx" | "parallel" | "kvCacheType">>;

/**
 * A GGUF model with one context of `parallel` sequences, one per session holding a KV cache. It
 * may be unloaded (its memory freed, every cache parked on disk) and loaded again in place: its
 * sessions hold this object and find their caches back.
 */
export class ModelHost {
  readonly pool: SequencePool;
  /** Facts of the last load (a reload with other settings changes the context's). */
  facts: ModelFacts;
  private live: Loaded | undefined;
  /** The vocabulary's ids, which stay known while unloaded (the same file loads the same). */
  private readonly vocab: NativeModelInfo;
  private disposed = false;
  private tempSwapDir: string | undefined;
  /** Turns running on the model now, and when it was last used (for keep-alive and the budget). */
  turns = 0;
  lastUsed = Date.now();
  /** Set while unload() runs: a turn beginning then waits and loads the model again. */
  unloading = false;
  /** Set by the model registry: loads the model again (within the budget) and hears it go idle. */
  keeper: { ready(host: ModelHost, onProgress?: (fraction: number) => void): Promise<void>; idle(host: ModelHost, afterTurn: boolean): void } | undefined;

  private constructor(
    private opts: EngineOptions,
    loaded: Loaded,
    swap: KvSwap,
  ) {
    this.live = loaded;
    this.facts = loaded.facts;
    this.vocab = loaded.vocab;
    this.pool = new SequencePool(loaded.loop, loaded.facts.sequences, loaded.vocab.eog, opts.maxQueue, swap, loaded.images);
  }

  /** Present when the model takes images (a projector was loaded). */
  get images(): Images | undefined {
    return this.live?.images;
  }

  /** Whether the model is in memory now. */
  get loaded(): boolean {
    return this.live !== undefined;
  }

  /** Bytes the model takes loaded: weights, projector and KV cache. */
  get memoryBytes(): number {
    const f = this.facts;
    return f.sizeBytes + (f.mmproj ? fs.statSync(f.mmproj, { throwIfNoEntry: false })?.size ?? 0 : 0) + f.kvCacheBytes;
  }

  /** The settings this model loads with. */
  get settings(): Required<LoadSettings> {
    return { ctx: this.opts.ctx, parallel: this.opts.parallel, kvCacheType: this.opts.kvCacheType };
  }

  private need(): Loaded {
    if (!this.live) throw fail.unavailable(`The model ${this.facts.name} is not loaded; send a turn (or \`nanollm load ${this.facts.name}\`) to load it again.`);
    return this.live;
  }

  /** A compiled GBNF grammar for a turn; bad GBNF is INVALID_ARGUMENT. */
  grammar(gbnf: string) {
    return this.need().grammars.compile(gbnf);
  }

  /** A grammar that constrains a tool call's JSON to the functions' schemas, or undefined. */
  toolCallGrammar(schema: object, closing: string) {
    return this.need().grammars.toolCall(schema, closing);
  }

  static async load(opts: EngineOptions, onProgress?: (fraction: number) => void): Promise<ModelHost> {
    const loaded = await loadModel(opts, onProgress);
    const { facts } = loaded;
    // Without a data dir, parked caches live in a temporary folder removed at dispose.
    const swapDir = opts.swapDir ? path.join(opts.swapDir, facts.name) : fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-kv-"));
    const host = new ModelHost(opts, loaded, new KvSwap(swapDir, KvSwap.modelId(facts.file), opts.log));
    host.tempSwapDir = opts.swapDir ? undefined : swapDir;
    return host;
  }

  /**
   * A turn begins: the model is loaded again first if it was unloaded (`onProgress` hears the
   * load). Each begin() is matched by one end(), also when it throws.
   */
  async begin(onProgress?: (fraction: number) => void): Promise<void> {
    this.turns++;
    this.lastUsed = Date.now();
    if (this.live && !this.unloading) return;
    onProgress?.(0);
    if (this.keeper) await this.keeper.ready(this, onProgress);
    else await this.reload({}, onProgress);
    onProgress?.(1);
  }

  /** A turn ended (its cache may still be being brought up to date); `turn` false: a change that is no turn. */
  end(turn = true): void {
    this.turns--;
    this.lastUsed = Date.now();
    if (this.turns === 0) this.keeper?.idle(this, turn);
  }

  /**
   * Frees the model's memory once no sequence is lent; every session's cache is parked on disk
   * first, so its next turn (which loads the model again) resumes without re-prefill.
   */
  async unload(): Promise<void> {
    if (!this.live || this.disposed) return;
    this.unloading = true;
    try {
      await this.pool.settled();
      await this.pool.detach();
    } finally {
      this.unloading = false;
    }
    const live = this.live;
    this.live = undefined;
    live.images?.dispose();
    live.loop.dispose();
    live.model.dispose();
    this.opts.log(`unloaded ${this.facts.name}`);
  }

  /** Loads the model again after unload(), with `settings` changed; sessions find their parked caches. */
  async reload(settings: LoadSettings = {}, onProgress?: (fraction: number) => void): Promise<void> {
    if (this.live) return;
    if (this.disposed) throw fail.unavailable("The daemon is shutting down; retry on its next start.");
    const opts = { ...this.opts, ...definedOnly(settings) };
    const loaded = await loadModel(opts, onProgress);
    this.opts = opts;
    this.live = loaded;
    this.facts = loaded.facts;
    this.pool.attach(loaded.loop, loaded.facts.sequences, loaded.images);
  }

  /** Tokens of a rendered prompt; template text may form control tokens, user text never does. */
  tokenize(segments: readonly Segment[]): Token[] {
    return this.need().tokenizer.segments(segments);
  }

  /** Plain tokenization of text (control strings stay plain); `continuation` for mid-text pieces. */
  tokenizeText(text: string, continuation = false): Token[] {
    return this.need().tokenizer.text(text, false, continuation);
  }

  /** Text of `ids`; `before` gives the preceding tokens so leading spaces come out right. */
  detokenize(ids: readonly Token[], before?: readonly Token[], specialTokens = false): string {
    return this.need().tokenizer.detokenize(ids, before, specialTokens);
  }

  /** The token's text including control tokens' own text. */
  tokenText(id: Token): string {
    return this.need().tokenizer.detokenize([id], undefined, true);
  }

  isEog(id: Token): boolean {
    return this.need().tokenizer.isEog(id);
  }

  /** Whether `id` names a token of this model's vocabulary (client-supplied ids are checked). */
  isValidToken(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize;
  }

  get vocabSize(): number {
    return this.facts.vocabSize;
  }

  /** The token that closes a reply cut short (rule 4 of the templates): end-of-turn, else EOS. */
  get endOfReplyToken(): Token | undefined {
    const t = this.vocab.eot >= 0 ? this.vocab.eot : this.vocab.eos;
    return t >= 0 ? t : undefined;
  }

  /** Decode counters of the context's loop (for tests and benchmarks). */
  loopStats() {
    return this.need().loop.stats();
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.tempSwapDir) fs.rmSync(this.tempSwapDir, { recursive: true, force: true });
    else await this.pool.saveAll();
    const live = this.live;
    this.live = undefined;
    live?.images?.dispose();
    live?.loop.dispose();
    live?.model.dispose();
  }
}

/** The fields of `o` that are set. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Loads the model file, creates its context and its projector: everything a load makes. */
async function loadModel(opts: EngineOptions, onProgress?: (fraction: number) => void): Promise<Loaded> {
  const file = path.resolve(opts.modelPath);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    throw fail.notFound(`Model file ${file} does not exist; pass the path of a .gguf file.`);
  }
  checkGguf(file);
  if (opts.ctx < 16) throw fail.invalid(`--ctx ${opts.ctx} is too small; use at least 16 tokens.`);
  const lib = loadLlama(opts.gpu);
  const started = performance.now();
  let lastShown = started;
  opts.log(`loading ${file} (${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB)`);
  let model: NativeModel;
  try {
    model = await nativeAddon().loadModel(file, { gpuLayers: lib.gpu ? 999 : 0 }, (p) => {
      onProgress?.(p);
      // At most one progress line a second, so big models show progress and small ones stay quiet.
      const now = performance.now();
      if (now - lastShown < 1000 || p >= 1) return;
      lastShown = now;
      opts.log(`loading ${path.basename(file)}: ${Math.floor(p * 100)}%`);
    });
  } catch (err) {
    throw fail.invalid(`${file} is not a loadable GGUF model (${(err as Error).message}); check the file is complete and a llama.cpp model.`);
  }
  const vocab = model.info();
  const shape = modelShape((key) => model.meta(key));
  if (opts.kvCacheType === "q8_0" && shape.headDim % 32 !== 0) {
    model.dispose();
    throw fail.invalid(`--kv-cache-type q8_0 needs an attention head size divisible by 32, and ${path.basename(file)} has ${shape.headDim}; use f16.`);
  }
  let ctx = opts.ctx;
  if (vocab.trainContextSize > 0 && ctx > vocab.trainContextSize) {
    opts.log(`warning: --ctx ${ctx} is more than ${path.basename(file)} was trained for; using its ${vocab.trainContextSize} tokens`);
    ctx = vocab.trainContextSize;
  }
  const loop = new ContextLoop();
  try {
    loop.attach(await model.createContext({ ctx, seqs: opts.parallel, batch: BATCH, threads: opts.threads, batchThreads: opts.batchThreads, adaptiveThreads: opts.adaptiveThreads ?? false, adaptiveBatchThreads: opts.adaptiveBatchThreads ?? false, kvCacheType: opts.kvCacheType, onEvents: loop.onEvents }));
  } catch (err) {
    model.dispose();
    throw fail.exhausted(`Could not create a ${opts.parallel}×${ctx}-token context for ${path.basename(file)} (${(err as Error).message}); lower --ctx or --parallel.`);
  }
  // The projector: the one asked for, else an mmproj*.gguf beside the model.
  const mmproj = opts.mmproj === "none" ? undefined : opts.mmproj ? path.resolve(opts.mmproj) : mmprojBeside(file);
  let images: Images | undefined;
  if (mmproj) {
    try {
      images = new Images(await loadProjector(mmproj, model, lib, { threads: Math.max(opts.threads, opts.batchThreads) }));
    } catch (err) {
      loop.dispose();
      model.dispose();
      throw err;
    }
    opts.log(`images: ${path.basename(mmproj)}`);
  }
  const facts = describe(model, vocab, shape, file, opts, loop.contextSize, images ? mmproj : undefined);
  opts.log(`loaded ${facts.name} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { model, loop, vocab, tokenizer: new Tokenizer(model, vocab), grammars: new Grammars(model), images, facts };
}

/** A file that is not GGUF never reaches llama.cpp. */
function checkGguf(file: string): void {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(8);
    const n = fs.readSync(fd, head, 0, 8, 0);
    if (n < 8 || head.toString("latin1", 0, 4) !== "GGUF") throw fail.invalid(`${file} is not a GGUF file; pass a llama.cpp model (.gguf).`);
    const version = head.readUInt32LE(4);
    if (version < 2 || version > 3) throw fail.invalid(`${file} is GGUF version ${version}, which this llama.cpp does not read; convert it again with a current llama.cpp.`);
  } finally {
    fs.closeSync(fd);
  }
}

export interface ModelShape {
  layers: number;
  headDim: number;
  kvEmbd: number;
}

/** The shape that sizes the KV cache, from a model's metadata (as text: llama.cpp's or a GGUF header's). */
export function modelShape(meta: (key: string) => string | undefined): ModelShape {
  const arch = meta("general.architecture") ?? "";
  const num = (key: string): number | undefined => {
    const v = meta(`${arch}.${key}`);
    if (v === undefined) return undefined;
    // Per-layer arrays come as text; the largest entry bounds the cache.
    const nums = (v.match(/\d+/g) ?? []).map(Number);
    return nums.length ? Math.max(...nums.slice(0, 4096)) : undefined;
  };
  const heads = num("attention.head_count") ?? 1;
  const kvHeads = num("attention.head_count_kv") ?? heads;
  const headDim = num("attention.key_length") ?? (num("embedding_length") ?? 0) / heads;
  return { layers: num("block_count") ?? 0, headDim, kvEmbd: kvHeads * headDim };
}

function describe(model: NativeModel, vocab: NativeModelInfo, shape: ModelShape, file: string, opts: EngineOptions, ctx: number, mmproj: string | undefined): ModelFacts {
  return {
    name: path.basename(file).replace(/\.gguf$/i, ""),
    file,
    sizeBytes: fs.statSync(file).size,
    architecture: model.meta("general.architecture") ?? "unknown",
    parameters: vocab.parameters,
    contextSize: ctx,
    sequences: opts.parallel,
    kvCacheBytes: kvCacheBytes(shape, ctx * opts.parallel, opts.kvCacheType),
    kvCacheType: opts.kvCacheType,
    trainContextSize: vocab.trainContextSize,
    ggufName: model.meta("general.name") ?? "",
    vocabSize: vocab.vocabSize,
    chatTemplateJinja: model.meta("tokenizer.chat_template"),
    mmproj,
  };
}
