import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaModel } from "node-llama-cpp";
import { fail, NanoError } from "@nanollm/shared";
import { kvCacheBytes } from "./kvBytes.js";
import { KvSwap } from "./KvSwap.js";
import { Grammars } from "./Grammars.js";
import { SequencePool } from "./SequencePool.js";
import { native, nativeOne, type EngineOptions, type GpuChoice, type ModelFacts, type Segment, type Token } from "./types.js";

// One Llama binding per process: every model shares its backend and thread settings.
let llamaPromise: Promise<Llama> | undefined;

async function sharedLlama(gpu: GpuChoice, maxThreads: number, log: (line: string) => void): Promise<Llama> {
  llamaPromise ??= getLlama({
    build: "never",
    gpu: gpu === "cpu" ? false : gpu,
    maxThreads,
    logLevel: LlamaLogLevel.warn,
    logger: (level, message) => {
      const text = message.trim();
      if (text && (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal)) log(`llama.cpp: ${text}`);
    },
  });
  return llamaPromise;
}

export interface EngineInfo {
  /** cpu, cuda, vulkan or metal. */
  backend: string;
  /** "prebuilt" (from npm) or "native" (`make native`: built here, with OpenMP). */
  binary: string;
  threads: number;
  batchThreads: number;
}

/**
 * Loads the llama.cpp binding and settles the thread counts: the given ones, else one-token steps
 * on every core but one, which is left to the event loop, and batches on every core. Measured on 2
 * cores: the prebuilt binary (no OpenMP; its threads spin at a barrier per graph node) decoded the
 * 114M bench model at 124–130 tok/s on 1 thread and 51–58 on 2; a native OpenMP build at 115–124 on
 * either, and the 260K stories model at 773 tok/s on 1 thread, 120–259 on 2. Batches gain from
 * every core (prefill 390 → 650 tok/s, 16 sessions 221 → 272 tok/s at 2 batch threads, prebuilt).
 */
export async function startEngine(opts: { gpu: GpuChoice; threads?: number; batchThreads?: number; log: (line: string) => void }): Promise<EngineInfo> {
  const cores = os.availableParallelism();
  const llama = await sharedLlama(opts.gpu, cores, opts.log);
  const openMp = /OPENMP = 1/.test(llama.systemInfo);
  const threads = opts.threads ?? Math.max(1, cores - 1);
  const batchThreads = opts.batchThreads ?? cores;
  llama.maxThreads = Math.max(threads, batchThreads);
  const binary = llama.buildType === "localBuild" ? `native${openMp ? ", OpenMP" : ""}` : "prebuilt";
  return { backend: llama.gpu === false ? "cpu" : llama.gpu, binary, threads, batchThreads };
}

/** A loaded GGUF model with one context of `parallel` sequences, one per session holding a KV cache. */
export class ModelHost {
  readonly pool: SequencePool;
  private readonly grammars: Grammars;
  private disposed = false;
  private tempSwapDir: string | undefined;

  private constructor(
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    readonly facts: ModelFacts,
    maxQueue: number,
    swap: KvSwap,
    threads: { decode: number; batch: number },
  ) {
    this.pool = new SequencePool(context, model, facts.vocabSize, maxQueue, swap, threads);
    this.grammars = new Grammars(model.llama, model);
  }

  /** A fresh evaluation state for a GBNF grammar (compiled once); bad GBNF is INVALID_ARGUMENT. */
  grammar(gbnf: string) {
    return this.grammars.state(gbnf);
  }

  /** A factory of grammar states that constrain a tool call's JSON to the functions' schemas. */
  toolCallGrammar(schema: object, closing: string) {
    return this.grammars.toolCall(schema, closing);
  }

  static async load(opts: EngineOptions): Promise<ModelHost> {
    const file = path.resolve(opts.modelPath);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      throw fail.notFound(`Model file ${file} does not exist; pass the path of a .gguf file.`);
    }
    const llama = await sharedLlama(opts.gpu, Math.max(opts.threads, opts.batchThreads), opts.log);
    llama.maxThreads = Math.max(llama.maxThreads, opts.threads, opts.batchThreads);
    let model: LlamaModel;
    const started = performance.now();
    let lastShown = started;
    opts.log(`loading ${file} (${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB)`);
    try {
      model = await llama.loadModel({
        modelPath: file,
        // At most one progress line a second, so big models show progress and small ones stay quiet.
        onLoadProgress: (p) => {
          const now = performance.now();
          if (now - lastShown < 1000 || p >= 1) return;
          lastShown = now;
          opts.log(`loading ${path.basename(file)}: ${Math.floor(p * 100)}%`);
        },
      });
    } catch (err) {
      throw fail.invalid(`${file} is not a loadable GGUF model (${firstLine(err)}); check the file is complete and a llama.cpp model.`);
    }
    const trainCtx = model.trainContextSize;
    const shape = modelShape(model);
    if (opts.kvCacheType === "q8_0" && shape.headDim % 32 !== 0) {
      await model.dispose();
      throw fail.invalid(`--kv-cache-type q8_0 needs an attention head size divisible by 32, and ${path.basename(file)} has ${shape.headDim}; use f16.`);
    }
    if (opts.ctx < 16) throw fail.invalid(`--ctx ${opts.ctx} is too small; use at least 16 tokens.`);
    const kvType = opts.kvCacheType === "q8_0" ? "Q8_0" : "F16";
    let context: LlamaContext | undefined;
    try {
      context = await model.createContext({
        contextSize: opts.ctx,
        sequences: opts.parallel,
        threads: opts.threads,
        // Every evaluation goes through the StepBatcher, at most this many tokens per llama_decode:
        // a long prompt delays the sessions that are generating by one batch at a time.
        batchSize: 256,
        // llama.cpp only supports a quantized V cache with flash attention.
        flashAttention: true,
        experimentalKvCacheKeyType: kvType,
        experimentalKvCacheValueType: kvType,
      });
    } catch (err) {
      await model.dispose();
      throw fail.exhausted(`Could not create a ${opts.parallel}×${opts.ctx}-token context for ${path.basename(file)} (${firstLine(err)}); lower --ctx or --parallel.`);
    }
    const facts = describe(model, shape, file, opts, context.contextSize, trainCtx);
    opts.log(`loaded ${facts.name} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    // Without a data dir, parked caches live in a temporary folder removed at dispose.
    const swapDir = opts.swapDir ? path.join(opts.swapDir, facts.name) : fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-kv-"));
    const host = new ModelHost(model, context, facts, opts.maxQueue, new KvSwap(swapDir, KvSwap.modelId(file), opts.log), { decode: opts.threads, batch: opts.batchThreads });
    host.tempSwapDir = opts.swapDir ? undefined : swapDir;
    return host;
  }

  /** Tokens of a rendered prompt; template text may form control tokens, user text never does. */
  tokenize(segments: readonly Segment[]): Token[] {
    const out: Token[] = [];
    for (const seg of segments) {
      if (seg.kind === "tokens") {
        out.push(...seg.ids);
        continue;
      }
      // Later pieces continue a prompt, so SPM's leading-space marker must not be added to them.
      const ids = this.model.tokenize(seg.text, seg.kind === "control", out.length > 0 ? "trimLeadingSpace" : undefined);
      out.push(...ids);
    }
    const bos = this.model.tokens.bos;
    if (this.model.tokens.shouldPrependBosToken && bos !== null && out[0] !== bos) out.unshift(bos as Token);
    return out;
  }

  /** Plain tokenization of text (control strings stay plain); `continuation` for mid-text pieces. */
  tokenizeText(text: string, continuation = false): Token[] {
    return this.model.tokenize(text, false, continuation ? "trimLeadingSpace" : undefined) as Token[];
  }

  /** Text of `ids`; `before` gives the preceding tokens so leading spaces come out right. */
  detokenize(ids: readonly Token[], before?: readonly Token[], specialTokens = false): string {
    return this.model.detokenize(native(ids), specialTokens, before && native(before));
  }

  /** The token's text including control tokens' own text. */
  tokenText(id: Token): string {
    return this.model.detokenize([nativeOne(id)], true);
  }

  isEog(id: Token): boolean {
    return this.model.isEogToken(nativeOne(id));
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
    return (this.model.tokens.eot ?? this.model.tokens.eos ?? undefined) as Token | undefined;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    if (this.tempSwapDir) fs.rmSync(this.tempSwapDir, { recursive: true, force: true });
    else await this.pool.saveAll();
    await this.context.dispose();
    await this.model.dispose();
  }
}

interface ModelShape {
  layers: number;
  headDim: number;
  kvEmbd: number;
}

function modelShape(model: LlamaModel): ModelShape {
  const arch = model.fileInfo.architectureMetadata as {
    block_count?: number;
    embedding_length?: number;
    attention?: { head_count?: number; head_count_kv?: number | number[]; key_length?: number };
  };
  const heads = arch.attention?.head_count ?? 1;
  const kvHeadsRaw = arch.attention?.head_count_kv ?? heads;
  const kvHeads = Array.isArray(kvHeadsRaw) ? Math.max(...kvHeadsRaw) : kvHeadsRaw;
  const headDim = arch.attention?.key_length ?? (arch.embedding_length ?? 0) / heads;
  return { layers: arch.block_count ?? 0, headDim, kvEmbd: kvHeads * headDim };
}

function describe(model: LlamaModel, shape: ModelShape, file: string, opts: EngineOptions, ctx: number, trainCtx: number): ModelFacts {
  const meta = model.fileInfo.metadata;
  const parameters = model.fileInfo.tensorInfo?.reduce((sum, t) => sum + t.dimensions.reduce<number>((a, d) => a * Number(d), 1), 0) ?? 0;
  return {
    name: path.basename(file).replace(/\.gguf$/i, ""),
    file,
    sizeBytes: fs.statSync(file).size,
    architecture: String(meta.general?.architecture ?? "unknown"),
    parameters,
    contextSize: ctx,
    sequences: opts.parallel,
    kvCacheBytes: kvCacheBytes(shape, ctx * opts.parallel, opts.kvCacheType),
    kvCacheType: opts.kvCacheType,
    trainContextSize: trainCtx,
    ggufName: String(meta.general?.name ?? ""),
    vocabSize: Array.isArray(meta.tokenizer?.ggml?.tokens) ? meta.tokenizer.ggml.tokens.length : 0,
    chatTemplateJinja: typeof meta.tokenizer?.chat_template === "string" ? meta.tokenizer.chat_template : undefined,
  };
}

function firstLine(err: unknown): string {
  const msg = err instanceof NanoError || err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}
