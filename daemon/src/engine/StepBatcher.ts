import type { LlamaContext, LlamaContextSequence } from "node-llama-cpp";
import { withLock } from "lifecycle-utils";
import { fail } from "@nanollm/shared";
import { DecodeCosts } from "./DecodeCosts.js";
import type { Token } from "./types.js";

interface NativeContext {
  setThreads(threads: number): void;
  initBatch(size: number): void;
  addToBatch(sequenceId: number, first: number, tokens: Uint32Array, logitIndexes: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(batchLogitIndex: number, sampler: unknown): Promise<number>;
  removeTokenCellsFromSequence(sequenceId: number, start: number, end: number): boolean;
}
// node-llama-cpp internals (pinned 3.22.1): the native context, the guard that keeps it alive while
// a decode runs, and each sequence's record of what its cache holds (kept exact here, as its own
// evaluate() would).
interface ContextInternals {
  _ctx: NativeContext;
  _batchSize: number;
  _backendContextDisposeGuard: { createPreventDisposalHandle(): { dispose(): void } };
}
interface SequenceInternals {
  _sequenceId: number;
  _nextTokenIndex: number;
  _contextTokens: Token[];
  contextSize: number;
  /** Hybrid, recurrent and sliding-window models: KV snapshots that let a cache tail be erased. */
  needsCheckpoints: boolean;
  _takeIntervalCheckpointIfNeeded(): Promise<void> | undefined;
}

/** An evaluation whose tokens are all in the cache now: the sampled token, or why sampling failed. */
export type Sampled = { token: Token } | { error: Error };

/** Tokens to append to a sequence's cache; with a sampler, the next token is sampled after them. */
export interface Work {
  readonly sequenceId: number;
  readonly tokens: readonly Token[];
  /** How many of `tokens` are in the cache already. */
  done: number;
  readonly sampler: unknown;
}

interface Pending extends Work {
  seq: SequenceInternals;
  signal: AbortSignal | undefined;
  resolve: (sampled: Sampled | undefined) => void;
  reject: (err: unknown) => void;
}

/** One item's tokens in a batch: `count` tokens from its `done`. */
export interface Segment<W extends Work = Work> {
  work: W;
  count: number;
}

/**
 * Every evaluation of the context goes through here: prompt chunks and the reply tokens of every
 * generating session, batched continuously. A round is one llama_decode: each generating session's
 * next token first, prompt tokens filling the rest of the batch (so a long prompt never stalls the
 * sessions that are generating for longer than one batch), then one sample per finished reply
 * step. A round of reply steps alone goes as one-token decodes instead where those measured
 * cheaper (DecodeCosts: on CPU, 2 sessions one after the other beat a 2-token batch by 1.7×).
 * A generating session asks for its next token with evaluate(); when every generating session
 * has asked, the round goes at once, otherwise it waits one macrotask so a session still handling
 * its last token can join.
 *
 * The rounds drive node-llama-cpp's native context directly, under the context lock its cache
 * edits and state saves take. Its `sequence.evaluate()` cost every token a generator, two locks, a
 * sampler configuration rebuilt in JS and sent to native code, and a trip through its batch queue;
 * on 2 cores that event-loop work also slows llama_decode on the other core (measured: 1 ms of
 * event-loop work during a step made it 0.7–1.5 ms longer).
 */
export class StepBatcher {
  private pending: Pending[] = [];
  private running = false;
  /** Sessions between their first and last reply token: those a round may wait for. */
  private decoding = 0;
  /** Rounds that carried reply steps, and the sessions they carried (for stats and tests). */
  steps = 0;
  carried = 0;
  /** What decodes of each size cost here; decides whether a round of reply steps is split. */
  readonly costs = new DecodeCosts();

  constructor(
    private readonly context: LlamaContext,
    /** Threads for a one-token batch, and for larger ones (README "Threads"). */
    private readonly threads: { decode: number; batch: number },
  ) {}

  /** Marks a session as generating until the returned function is called. */
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
   * Appends `tokens` to the sequence's cache, in as many rounds as the batch size needs; with a
   * sampler, then samples the next token. Rejects when a decode failed (the round's tokens are
   * then not in the cache) or `signal` aborted between rounds (the tokens evaluated so far stay).
   */
  evaluate(sequence: LlamaContextSequence, tokens: readonly Token[], opts: { sampler?: unknown; signal?: AbortSignal } = {}): Promise<Sampled | undefined> {
    const seq = sequence as unknown as SequenceInternals;
    if (seq._nextTokenIndex + tokens.length >= seq.contextSize) {
      return Promise.reject(fail.internal(`${tokens.length} more tokens do not fit the sequence's context of ${seq.contextSize}.`));
    }
    if (tokens.length === 0) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.pending.push({ seq, sequenceId: seq._sequenceId, tokens, done: 0, sampler: opts.sampler, signal: opts.signal, resolve, reject });
      if (!this.running) {
        this.running = true;
        void this.loop();
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const asked = this.pending.filter((p) => p.sampler !== undefined).length;
        if (asked < this.decoding) await new Promise((r) => setImmediate(r));
        for (const p of this.pending.filter((p) => p.signal?.aborted)) {
          this.drop(p);
          p.reject(fail.cancelled("The turn was cancelled during prompt evaluation."));
        }
        const round = planRound(this.pending, (this.context as unknown as ContextInternals)._batchSize);
        if (round.length === 0) continue;
        const carried = round.filter((s) => s.work.sampler !== undefined && s.work.done + s.count === s.work.tokens.length).length;
        if (carried > 0) {
          this.steps++;
          this.carried += carried;
        }
        try {
          await this.run(round);
        } catch (err) {
          for (const { work } of round) {
            this.drop(work);
            work.reject(err);
          }
        }
      }
    } finally {
      this.running = false;
    }
  }

  private drop(p: Pending): void {
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }

  private async run(round: Segment<Pending>[]): Promise<void> {
    const context = this.context as unknown as ContextInternals;
    await withLock([context, "context"], async () => {
      const guard = context._backendContextDisposeGuard.createPreventDisposalHandle();
      try {
        // A round of one-token reply steps only may go as single decodes (DecodeCosts).
        const stepsOnly = round.every(({ work, count }) => count === 1 && work.sampler !== undefined && work.done + 1 === work.tokens.length);
        if (stepsOnly && this.costs.split(round.length)) {
          for (const segment of round) await this.decode(context._ctx, [segment]);
        } else {
          await this.decode(context._ctx, round);
        }
      } finally {
        guard.dispose();
      }
    });
  }

  /** One llama_decode of `segments`, then a sample for each that finished a reply step. */
  private async decode(ctx: NativeContext, segments: Segment<Pending>[]): Promise<void> {
    const size = segments.reduce((n, s) => n + s.count, 0);
    ctx.initBatch(size);
    ctx.setThreads(size > 1 ? this.threads.batch : this.threads.decode);
    const logitAt = segments.map(({ work, count }) => {
      const last = work.sampler !== undefined && work.done + count === work.tokens.length;
      const at = ctx.addToBatch(work.sequenceId, work.seq._nextTokenIndex, Uint32Array.from(work.tokens.slice(work.done, work.done + count)), last ? Uint32Array.of(count - 1) : NO_LOGITS);
      return last ? at[0]! : -1;
    });
    const started = performance.now();
    try {
      await ctx.decodeBatch();
    } catch (err) {
      // Whatever part of the batch reached the cache leaves it, so each sequence holds what its
      // record says.
      for (const { work } of segments) {
        ctx.removeTokenCellsFromSequence(work.sequenceId, work.seq._nextTokenIndex, -1);
        this.drop(work);
        work.reject(fail.internal(`llama.cpp could not evaluate a batch: ${err instanceof Error ? err.message : String(err)}`));
      }
      return;
    }
    this.costs.record(size, performance.now() - started);
    for (const { work, count } of segments) {
      work.seq._nextTokenIndex += count;
      work.seq._contextTokens.push(...work.tokens.slice(work.done, work.done + count));
      // As node-llama-cpp does after each batch: models that cannot erase a cache tail otherwise
      // keep snapshots now and then (a no-op for others).
      if (work.seq.needsCheckpoints) await work.seq._takeIntervalCheckpointIfNeeded();
    }
    const finished: Promise<void>[] = [];
    segments.forEach(({ work, count }, i) => {
      work.done += count;
      if (work.done < work.tokens.length) return;
      this.drop(work);
      if (logitAt[i]! < 0) return work.resolve(undefined);
      // Samples go out together; with one libuv thread they run back to back.
      finished.push(
        ctx.sampleToken(logitAt[i]!, work.sampler).then(
          (token) => work.resolve(token >= 0 ? { token } : { error: fail.internal("llama.cpp sampled no token.") }),
          (err: unknown) => work.resolve({ error: fail.internal(`llama.cpp could not sample a token: ${err instanceof Error ? err.message : String(err)}`) }),
        ),
      );
    });
    await Promise.all(finished);
  }
}

const NO_LOGITS = new Uint32Array(0);

/**
 * What one batch of `size` tokens carries: reply steps (one token left) first, then the rest
 * (prompts, inserted function results) in arrival order, each as much as fits; in sequence-id
 * order, because with one KV stream per sequence (node-llama-cpp's setting) llama.cpp cuts a batch
 * wherever the next token's sequence id is not the previous + 1 (tokens in arrival order cut a
 * 15-session step into many 2–3-token micro-batches, each reading every weight again: 112 ms
 * instead of 36).
 */
export function planRound<W extends Work>(pending: readonly W[], size: number): Segment<W>[] {
  const left = (w: W) => w.tokens.length - w.done;
  const ordered = [...pending.filter((w) => left(w) === 1), ...pending.filter((w) => left(w) > 1)];
  const round: Segment<W>[] = [];
  let room = size;
  for (const work of ordered) {
    if (room === 0) break;
    const count = Math.min(left(work), room);
    round.push({ work, count });
    room -= count;
  }
  return round.sort((a, b) => a.work.sequenceId - b.work.sequenceId);
}
