import type { LlamaContext } from "node-llama-cpp";
import { withLock } from "lifecycle-utils";
import { fail } from "@nanollm/shared";
import type { Token } from "./types.js";

/** One session's part of a decode step: tokens to evaluate at `first`, then a sample. */
export interface StepItem {
  sequenceId: number;
  first: number;
  tokens: Token[];
  /** The native sampler (configured by the session's TokenStepper). */
  sampler: unknown;
}

interface NativeContext {
  removeTokenCellsFromSequence(sequenceId: number, start: number, end: number): boolean;
  initBatch(size: number): void;
  addToBatch(sequenceId: number, first: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: unknown): Promise<number>;
}
// node-llama-cpp internals (pinned 3.22.1): the native context, and the guard that keeps it alive
// while a decode runs.
interface ContextInternals {
  _ctx: NativeContext;
  _batchSize: number;
  _backendContextDisposeGuard: { createPreventDisposalHandle(): { dispose(): void } };
}

/** A step whose tokens are in the cache now: the sampled token, or why sampling failed. */
export type Sampled = { token: Token } | { error: Error };

interface Pending {
  item: StepItem;
  resolve: (sampled: Sampled) => void;
  reject: (err: unknown) => void;
}

/**
 * Continuous batching across sessions: every session that is generating puts its next token into
 * the same llama_decode call. A session asks for its next token with step(); when every decoding
 * session has asked, the round goes at once, otherwise it waits one macrotask so a session still
 * handling its last token can join. A round is one decode of all its tokens (in sequence-id order:
 * with one KV stream per sequence llama.cpp cuts a batch wherever the next token's sequence id is
 * not the previous + 1) and then one sample per session.
 *
 * The round drives node-llama-cpp's native context itself, under the same context lock its own
 * batches (prompt chunks) and cache edits take. Going through `sequence.evaluate()` cost every
 * token a generator, two locks, a sampler configuration rebuilt in JS and sent to native code,
 * and a trip through its batch queue; on 2 cores that event-loop work also slows llama_decode on
 * the other core (measured: 1 ms of event-loop work during a step made it 0.7–1.5 ms longer).
 */
export class StepBatcher {
  private pending: Pending[] = [];
  private running = false;
  /** Sessions between their first and last token: those a round may wait for. */
  private decoding = 0;
  /** Decode steps issued, and the sessions they carried (for stats and tests). */
  steps = 0;
  carried = 0;

  constructor(private readonly context: () => LlamaContext) {}

  /** Marks a session as decoding until the returned function is called. */
  enter(): () => void {
    this.decoding++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.decoding--;
    };
  }

  /**
   * Evaluates the item's tokens together with the other sessions' of this round, then samples.
   * Rejects when the decode failed (the tokens are then not in the cache).
   */
  step(item: StepItem): Promise<Sampled> {
    return new Promise<Sampled>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (!this.running) {
        this.running = true;
        void this.loop();
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        if (this.pending.length < this.decoding) await new Promise((r) => setImmediate(r));
        // A batch holds every session's last token: a round takes at most a batch of sessions.
        const round = this.pending.splice(0, this.batchSize()).sort((a, b) => a.item.sequenceId - b.item.sequenceId);
        this.steps++;
        this.carried += round.length;
        try {
          await this.run(round);
        } catch (err) {
          for (const p of round) p.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }

  private batchSize(): number {
    return (this.context() as unknown as ContextInternals)._batchSize;
  }

  private async run(round: Pending[]): Promise<void> {
    const context = this.context() as unknown as ContextInternals;
    await withLock([context, "context"], async () => {
      const guard = context._backendContextDisposeGuard.createPreventDisposalHandle();
      try {
        const ctx = context._ctx;
        const items = round.map((p) => p.item);
        let logitAt: number[];
        try {
          logitAt = await decodeRound(ctx, items, context._batchSize);
        } catch (err) {
          // Whatever part of the round reached the cache leaves it, so each sequence holds what
          // its owner believes it holds.
          for (const it of items) ctx.removeTokenCellsFromSequence(it.sequenceId, it.first, -1);
          throw fail.internal(`llama.cpp could not evaluate a decode step: ${err instanceof Error ? err.message : String(err)}`);
        }
        // Samples go out together; with one libuv thread they run back to back.
        await Promise.all(
          round.map((p, i) =>
            ctx.sampleToken(logitAt[i]!, p.item.sampler).then(
              (token) => p.resolve(token >= 0 ? { token } : { error: fail.internal("llama.cpp sampled no token.") }),
              (err: unknown) => p.resolve({ error: fail.internal(`llama.cpp could not sample a token: ${err instanceof Error ? err.message : String(err)}`) }),
            ),
          ),
        );
      } finally {
        guard.dispose();
      }
    });
  }
}

/**
 * Decodes every item's tokens; returns each item's batch index of its last token's logits. Tokens
 * ahead of an item's last one (a function result entering the cache) go first, in batch-size
 * chunks without logits; then one call evaluates every item's last token, so all the logits to
 * sample are those of the final llama_decode.
 */
async function decodeRound(ctx: NativeContext, items: StepItem[], batchSize: number): Promise<number[]> {
  let parts: { sequenceId: number; first: number; tokens: Token[] }[] = [];
  let size = 0;
  const decodeParts = async () => {
    if (size === 0) return;
    ctx.initBatch(size);
    for (const p of parts) ctx.addToBatch(p.sequenceId, p.first, Uint32Array.from(p.tokens), NO_LOGITS);
    parts = [];
    size = 0;
    await ctx.decodeBatch();
  };
  for (const it of items) {
    const lead = it.tokens.length - 1;
    for (let at = 0; at < lead; ) {
      const n = Math.min(lead - at, batchSize - size);
      parts.push({ sequenceId: it.sequenceId, first: it.first + at, tokens: it.tokens.slice(at, at + n) });
      size += n;
      at += n;
      if (size === batchSize) await decodeParts();
    }
  }
  await decodeParts();
  ctx.initBatch(items.length);
  const logitAt = items.map((it) => ctx.addToBatch(it.sequenceId, it.first + it.tokens.length - 1, Uint32Array.of(it.tokens[it.tokens.length - 1]!), LAST_LOGITS)[0]!);
  await ctx.decodeBatch();
  return logitAt;
}

const NO_LOGITS = new Uint32Array(0);
const LAST_LOGITS = Uint32Array.of(0);
