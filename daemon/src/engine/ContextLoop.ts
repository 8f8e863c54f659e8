import { fail } from "@nanollm/shared";
import type { LoopEvent, NativeContext, NativeGrammar, NativeSampling } from "./native.js";
import type { Token } from "./types.js";

/** An encoded image among a job's tokens, covering its placeholder entries from `offset`. */
export interface ImageSpan {
  offset: number;
  embedding: unknown;
}

/** Why a reply's sampling ended in the loop. */
export type ReplyEnd = "eog" | "max" | "ctx" | "cancelled";

type Waiter = (ev: LoopEvent) => void;

/**
 * The JS side of a native context: the loop thread runs every llama_decode and sample; this
 * queues jobs and KV operations and routes the loop's batched events to whoever waits for them.
 * Nothing here runs per token but handing tokens on.
 */
export class ContextLoop {
  private readonly waiting = new Map<number, Waiter>();
  private native!: NativeContext;
  private disposed = false;

  /** The callback the native context calls with each batch of events. */
  readonly onEvents = (events: LoopEvent[]): void => {
    for (const ev of events) this.waiting.get(ev.id)?.(ev);
  };

  attach(native: NativeContext): void {
    this.native = native;
  }

  get contextSize(): number {
    return this.native.info().contextSize;
  }

  get threadpool(): boolean {
    return this.native.info().threadpool;
  }

  stats() {
    return this.native.stats();
  }

  cached(seq: number): Token[] {
    return Array.from(this.native.cached(seq));
  }

  cachedLength(seq: number): number {
    return this.native.cachedLength(seq);
  }

  /** Erases the sequence's cache from `from` on (a model that cannot cut a tail loses it all). */
  erase(seq: number, from: number): Promise<void> {
    return this.op("erase", seq, from).then(() => undefined);
  }

  clear(seq: number): Promise<void> {
    return this.op("clear", seq, 0).then(() => undefined);
  }

  /** Writes the sequence's state (its tokens and KV cells); resolves to the bytes written. */
  async save(seq: number, file: string): Promise<number> {
    return (await this.op("save", seq, 0, file)).value;
  }

  /** Replaces the sequence's cache with a state file's; resolves to the tokens it holds. */
  async load(seq: number, file: string): Promise<Token[]> {
    return Array.from((await this.op("load", seq, 0, file)).tokens);
  }

  /** Appends `tokens` to the sequence's cache; `signal` stops it between batches. */
  evaluate(seq: number, tokens: readonly Token[], images: ImageSpan[], signal?: AbortSignal): Promise<void> {
    if (tokens.length === 0) return Promise.resolve();
    this.check();
    const id = this.native.submit({ seq, tokens: Int32Array.from(tokens), images, sample: false });
    return new Promise((resolve, reject) => {
      const onAbort = () => this.native.cancel(id);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.set(id, (ev) => {
        if (!ev.end) return;
        this.waiting.delete(id);
        signal?.removeEventListener("abort", onAbort);
        if (ev.end === "done") resolve();
        else if (ev.end === "cancelled") reject(fail.cancelled("The turn was cancelled during prompt evaluation."));
        else reject(fail.internal(ev.error ?? `The evaluation ended with ${ev.end}.`));
      });
    });
  }

  /**
   * Starts a reply: evaluates `tokens` after the cache and samples up to `maxSamples` tokens.
   * Free-running unless `lockstep`, where each token waits for resume() (JS decides what
   * follows: a function result, a grammar).
   */
  reply(job: { seq: number; tokens: readonly Token[]; images: ImageSpan[]; history: readonly Token[]; sampling: NativeSampling; maxSamples: number; lockstep: boolean; grammar?: NativeGrammar }): Reply {
    this.check();
    const id = this.native.submit({
      seq: job.seq,
      tokens: Int32Array.from(job.tokens),
      images: job.images,
      sample: true,
      lockstep: job.lockstep,
      maxSamples: Math.max(1, job.maxSamples),
      sampling: job.sampling,
      grammar: job.grammar,
      history: Int32Array.from(job.history),
    });
    const reply = new Reply(id, this.native, () => this.waiting.delete(id));
    this.waiting.set(id, (ev) => reply.take(ev));
    return reply;
  }

  /** Cancels what runs and frees the context; jobs still waiting end as cancelled. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.native.dispose();
    for (const [id, waiter] of this.waiting) waiter({ id, tokens: new Int32Array(0), end: "cancelled", error: "The model was unloaded.", value: 0 });
    this.waiting.clear();
  }

  private check(): void {
    if (this.disposed) throw fail.unavailable("The model was unloaded; retry the turn.");
  }

  private op(kind: "erase" | "clear" | "save" | "load", seq: number, from: number, file?: string): Promise<LoopEvent> {
    this.check();
    const id = this.native.op(kind, seq, from, file);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, (ev) => {
        this.waiting.delete(id);
        if (ev.end === "ok") resolve(ev);
        else reject(new Error(ev.error ?? `The ${kind} operation failed.`));
      });
    });
  }
}

/** One reply's tokens as the loop samples them; ends with the loop's reason. */
export class Reply {
  private readonly queue: Token[] = [];
  private ended: ReplyEnd | undefined;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private endWaiters: (() => void)[] = [];

  constructor(
    readonly id: number,
    private readonly native: NativeContext,
    private readonly done: () => void,
  ) {}

  take(ev: LoopEvent): void {
    for (const t of ev.tokens) this.queue.push(t);
    if (ev.end) {
      this.done();
      if (ev.end === "error" || ev.end === "done" || ev.end === "ok") this.error = fail.internal(ev.error ?? `The reply ended with ${ev.end}.`);
      this.ended = ev.end === "error" || ev.end === "done" || ev.end === "ok" ? "cancelled" : ev.end;
      for (const w of this.endWaiters.splice(0)) w();
    }
    this.wake?.();
    this.wake = undefined;
  }

  /** The next token, or undefined once the reply ended (then `end` says why). */
  async next(): Promise<Token | undefined> {
    for (;;) {
      const token = this.queue.shift();
      if (token !== undefined) return token;
      if (this.error) throw this.error;
      if (this.ended) return undefined;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  get end(): ReplyEnd | undefined {
    return this.ended;
  }

  /** Lockstep: continues after the last token with `tokens` (default: that token), maybe under a grammar. */
  resume(tokens?: readonly Token[], grammar?: NativeGrammar): void {
    if (this.ended) return;
    this.native.resume(this.id, tokens ? Int32Array.from(tokens) : null, grammar);
  }

  /** Stops sampling; resolves once the loop let go of the sequence. */
  async stop(): Promise<void> {
    if (this.ended) return;
    this.native.cancel(this.id);
    await new Promise<void>((r) => this.endWaiters.push(r));
  }
}
