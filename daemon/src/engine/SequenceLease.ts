import { fail } from "@nanollm/shared";
import type { ContextLoop, Reply, ReplyEnd } from "./ContextLoop.js";
import { imageSpans, type Images } from "./Images.js";
import type { KvSwap } from "./KvSwap.js";
import type { NativeGrammar } from "./native.js";
import type { PrefillStats, Sampling, Token } from "./types.js";

export interface Slot {
  /** The native sequence id. */
  seq: number;
  owner: string | undefined;
  busy: boolean;
  lastUsed: number;
}

/** How a reply's tokens come: free-running, or one at a time while JS decides what follows. */
export interface ReplyOptions {
  signal: AbortSignal;
  /** Each token waits for next(): function calls and tool grammars decide from its text. */
  lockstep: boolean;
  /** A grammar for the whole reply, or one that JS switches on mid-reply (lockstep only). */
  grammar?: NativeGrammar | (() => NativeGrammar | undefined);
}

/** A session's exclusive use of one KV-cache sequence for the length of a turn. */
export class SequenceLease {
  private released = false;

  constructor(
    private readonly slot: Slot,
    private readonly loop: ContextLoop,
    private readonly eog: Int32Array,
    /** How the slot changed hands: whose cache to park first, and whether to load the owner's. */
    private handover: { previous: string | undefined; fresh: boolean; swap: KvSwap } | undefined,
    private readonly onRelease: () => void,
    /** The model's images, when it has a projector: placeholders in prompts become embeddings. */
    private readonly images: Images | undefined,
  ) {}

  get contextSize(): number {
    return this.loop.contextSize;
  }

  get cachedTokens(): readonly Token[] {
    return this.loop.cached(this.slot.seq);
  }

  /**
   * Readies the cache for a prompt: takes the sequence over from its previous owner if needed and
   * erases what does not match `tokens`. Evaluates nothing: the reply's first step evaluates the
   * rest of the prompt in the same batch that gives the first token's logits, so it always leaves
   * at least the prompt's last token to evaluate.
   */
  async prepare(tokens: readonly Token[]): Promise<PrefillStats> {
    if (tokens.length === 0) throw fail.invalid("The prompt rendered to no tokens; send some text.");
    const keep = await this.align(tokens, tokens.length - 1);
    return { inputTokens: tokens.length, reusedTokens: keep, evaluatedTokens: tokens.length - keep };
  }

  /** Makes the cache hold exactly `tokens`, erasing a divergent tail and evaluating the rest. */
  async sync(tokens: readonly Token[], signal: AbortSignal): Promise<void> {
    const keep = await this.align(tokens, tokens.length);
    if (signal.aborted) throw fail.cancelled("The turn was cancelled during prompt evaluation.");
    const rest = tokens.slice(keep);
    await this.loop.evaluate(this.slot.seq, rest, await imageSpans(this.images, rest), signal);
  }

  /** Hands the sequence over if needed, then keeps the longest cached prefix of `tokens` (at most `max`). */
  private async align(tokens: readonly Token[], max: number): Promise<number> {
    const seq = this.slot.seq;
    if (this.handover) {
      const { previous, fresh, swap } = this.handover;
      this.handover = undefined;
      if (previous !== undefined) await swap.save(previous, this.loop, seq);
      if (fresh) {
        await this.loop.clear(seq);
        await swap.load(this.slot.owner!, this.loop, seq);
      }
    }
    const cached = this.loop.cached(seq);
    let keep = 0;
    const limit = Math.min(cached.length, max);
    while (keep < limit && cached[keep] === tokens[keep]) keep++;
    // An image is kept whole or not at all.
    while (keep > 0 && keep < tokens.length && tokens[keep]! < 0 && tokens[keep - 1] === tokens[keep]) keep--;
    if (keep < cached.length) await this.loop.erase(seq, keep);
    return keep;
  }

  /**
   * Samples reply tokens after `prompt`, whose tokens the cache does not hold yet (after prepare:
   * at least the last) are evaluated by the first step. The consumer stops by breaking out; the
   * token it last received is then NOT in the cache yet (the next sync adds it). In lockstep,
   * passing tokens to next() evaluates them instead of the last token alone (it must lead them):
   * that is how function results enter the cache mid-reply. Until `minNewTokens` tokens are out,
   * every end-of-generation token is forbidden, unless a grammar is in force (a finished grammar
   * allows nothing but the end).
   */
  async *decode(prompt: readonly Token[], sampling: Sampling, opts: ReplyOptions): AsyncGenerator<Token, ReplyEnd | undefined, Token[] | undefined> {
    const cached = this.loop.cachedLength(this.slot.seq);
    const grammarNow = typeof opts.grammar === "function" ? opts.grammar() : opts.grammar;
    let applied = grammarNow;
    const rest = prompt.slice(cached);
    const images = await imageSpans(this.images, rest);
    const reply: Reply = this.loop.reply({
      seq: this.slot.seq,
      tokens: rest,
      images,
      history: prompt.slice(Math.max(0, cached - 64), cached),
      sampling: {
        doSample: sampling.doSample,
        temperature: sampling.temperature,
        topK: sampling.topK,
        topP: sampling.topP,
        repetitionPenalty: sampling.repetitionPenalty,
        seed: Math.max(0, Math.floor(sampling.seed)) >>> 0,
        minNewTokens: this.eog.length > 0 ? sampling.minNewTokens : 0,
      },
      // Inserted tokens count against the limit in JS; the loop's own bound is a backstop.
      maxSamples: Math.max(1, sampling.maxNewTokens),
      lockstep: opts.lockstep,
      grammar: grammarNow,
    });
    const onAbort = () => void reply.stop();
    opts.signal.addEventListener("abort", onAbort, { once: true });
    let first = true;
    try {
      for (;;) {
        const token = await reply.next();
        if (token === undefined) {
          if (first && reply.end === "cancelled") throw fail.cancelled("The turn was cancelled during prompt evaluation.");
          return reply.end;
        }
        first = false;
        const inserted: Token[] | undefined = yield token;
        if (opts.lockstep) {
          const g = typeof opts.grammar === "function" ? opts.grammar() : undefined;
          const fresh = g !== undefined && g !== applied ? g : undefined;
          if (fresh) applied = fresh;
          reply.resume(inserted, fresh);
        }
      }
    } finally {
      opts.signal.removeEventListener("abort", onAbort);
      await reply.stop();
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.slot.busy = false;
    this.onRelease();
  }
}
