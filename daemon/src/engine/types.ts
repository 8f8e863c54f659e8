// Engine-neutral types: the rest of the daemon never sees llama.cpp's own.

export type Token = number;

/** A piece of a rendered prompt. Template text may hold control tokens; user text never does. */
export type Segment =
  | { kind: "control"; text: string }
  | { kind: "text"; text: string }
  | { kind: "tokens"; ids: readonly Token[]; text: string }
  /** An image's pieces (Images.read): the projector's wrapping tokens and placeholder positions. */
  | { kind: "image"; image: import("./Images.js").ImageRef; text: string };

export type GpuChoice = "auto" | "cpu" | "cuda" | "vulkan" | "metal";
export type KvCacheType = "f16" | "q8_0";

export interface EngineOptions {
  modelPath: string;
  gpu: GpuChoice;
  threads: number;
  /** Threads for batches of several tokens (prompt chunks, multi-session steps). */
  batchThreads: number;
  /** Counts the user did not fix: the loop then learns per kind of decode whether 1 or that many is faster. */
  adaptiveThreads?: boolean;
  adaptiveBatchThreads?: boolean;
  /** Sequences in the context: sessions that can hold a KV cache at once. */
  parallel: number;
  /** Context tokens per sequence. */
  ctx: number;
  kvCacheType: KvCacheType;
  /** Turns that may wait for a free sequence before RESOURCE_EXHAUSTED. */
  maxQueue: number;
  /** Where idle sessions' KV caches are parked on disk (default: a temporary folder). */
  swapDir?: string;
  /** The projector for images: a file, "none", or undefined to look for mmproj*.gguf beside the model. */
  mmproj?: string;
  log: (line: string) => void;
}

/** Fully resolved sampling settings for one turn. */
export interface Sampling {
  maxNewTokens: number;
  minNewTokens: number;
  doSample: boolean;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed: number;
  /** GBNF the reply must follow. */
  grammar?: string;
}

export interface ModelFacts {
  name: string;
  file: string;
  sizeBytes: number;
  architecture: string;
  parameters: number;
  contextSize: number;
  sequences: number;
  kvCacheBytes: number;
  kvCacheType: KvCacheType;
  trainContextSize: number;
  vocabSize: number;
  /** GGUF metadata used to choose a template. */
  ggufName: string;
  chatTemplateJinja: string | undefined;
  /** The projector (mmproj) file when the model takes images. */
  mmproj: string | undefined;
}

/** What a prompt's preparation found: its tokens, those the cache already held, those to evaluate. */
export interface PrefillStats {
  inputTokens: number;
  reusedTokens: number;
  evaluatedTokens: number;
}
