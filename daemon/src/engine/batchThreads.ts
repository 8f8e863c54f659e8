import type { LlamaContext } from "node-llama-cpp";

interface NativeContext {
  initBatch(size: number): unknown;
  setThreads(threads: number): unknown;
  decodeBatch(): Promise<unknown>;
}

/**
 * Separate thread counts for one-token decode steps and for batches of several tokens (prompt
 * chunks, steps that carry several sessions). llama.cpp itself keeps two counts (n_threads for a
 * one-token batch, n_threads_batch otherwise), but node-llama-cpp sets both to one `threads` and
 * re-applies it before every decode, so its native context (internal, pinned 3.22.1) is wrapped:
 * the size of the batch being built picks the count right before the decode.
 *
 * Why: the prebuilt CPU binaries have no OpenMP; ggml's own threads meet at a spinning barrier
 * after every graph node. A one-token step has hundreds of tiny nodes and little work each, so a
 * second thread mostly spins (and fights the event loop for the core); a many-token batch has
 * real work per node, and it pays. See README "Threads" for the figures.
 */
/** Wrappers stay replaceable, so a probe (bench/stepProfile) can wrap them again. */
const WRAPPER = { configurable: true, writable: true };

export function splitThreads(context: LlamaContext, threads: { decode: number; batch: number }): void {
  if (threads.decode === threads.batch) return;
  const ctx = (context as unknown as { _ctx: NativeContext })._ctx;
  const { initBatch, setThreads, decodeBatch } = ctx;
  let size = 1;
  // Own properties shadow the native methods; the object itself (passed back to native code
  // elsewhere) stays the same.
  Object.defineProperty(ctx, "initBatch", {
    ...WRAPPER,
    value(this: NativeContext, n: number) {
      size = n;
      return initBatch.call(this, n);
    },
  });
  Object.defineProperty(ctx, "setThreads", { ...WRAPPER, value: () => undefined });
  Object.defineProperty(ctx, "decodeBatch", {
    ...WRAPPER,
    value(this: NativeContext) {
      setThreads.call(this, size > 1 ? threads.batch : threads.decode);
      return decodeBatch.call(this);
    },
  });
}
