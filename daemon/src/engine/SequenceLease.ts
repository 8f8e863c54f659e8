import type { LlamaContextSequence, LlamaGrammarEvaluationState } from "node-llama-cpp";
import type { KvSwap } from "./KvSwap.js";
import type { StepBatcher } from "./StepBatcher.js";
import { TokenStepper } from "./TokenStepper.js";
import { fail } from "@nanollm/shared";
import { native, type PrefillStats, type Sampling, type Token } from "./types.js";

export interface Slot {
  seq: LlamaContextSequence;
  owner: string | undefined;
  busy: boolean;
  lastUsed: number;
}

/** A session's exclusive use of one KV-cache sequence for the length of a turn. */
export class SequenceLease {
  private released = false;

  constructor(
    private readonly slot: Slot,
    private readonly eog: { keys: Uint32Array; values: Float32Array },
    /** How the slot changed hands: whose cache to park first, and whether to load the owner's. */
    private handover: { previous: string | undefined; fresh: boolean; swap: KvSwap } | undefined,
    private readonly onRelease: () => void,
    private readonly batcher: StepBatcher,
  ) {}

  get contextSize(): number {
    return this.slot.seq.contextSize;
  }

  get cachedTokens(): readonly Token[] {
    return this.slot.seq.contextTokens;
  }

  /**
   * Readies the cache for a prompt: takes the sequence over from its previous owner if needed and
   * erases what does not match `tokens`. Evaluates nothing: the reply's first decode step evaluates
   * the rest of the prompt in the same batch that gives the first token's logits, so it always
   * leaves at least the prompt's last token to evaluate.
   */
  async prepare(tokens: readonly Token[]): Promise<PrefillStats> {
    if (tokens.length === 0) throw fail.invalid("The prompt rendered to no tokens; send some text.");
    const keep = await this.align(tokens.slice(0, -1));
    return { inputTokens: tokens.length, reusedTokens: keep, evaluatedTokens: tokens.length - keep };
  }

  /** Makes the cache hold exactly `tokens`, erasing a divergent tail and evaluating the rest. */
  async sync(tokens: readonly Token[], signal: AbortSignal): Promise<void> {
    const keep = await this.align(tokens);
    if (signal.aborted) throw fail.cancelled("The turn was cancelled during prompt evaluation.");
    await this.batcher.evaluate(this.slot.seq, tokens.slice(keep), { signal });
  }

  /** Hands the sequence over if needed, then keeps the longest cached prefix of `tokens`; its length. */
  private async align(tokens: readonly Token[]): Promise<number> {
    const seq = this.slot.seq;
    if (this.handover) {
      const { previous, fresh, swap } = this.handover;
      this.handover = undefined;
      if (previous !== undefined) await swap.save(previous, seq);
      if (fresh) {
        await seq.clearHistory();
        await swap.load(this.slot.owner!, seq);
      }
    }
    const keep = Math.min(seq.compareContextTokens(native(tokens)).firstDifferentIndex, tokens.length);
    if (keep < seq.nextTokenIndex) await seq.eraseContextTokenRanges([{ start: keep, end: seq.nextTokenIndex }]);
    return keep;
  }

  /**
   * Samples reply tokens after `prompt`, whose tokens the cache does not hold yet (after prepare:
   * at least the last) are evaluated by the first step; `signal` stops that between batches. The
   * consumer stops by breaking out; the token it last received is then NOT in the cache yet (the
   * next sync adds it), unless it had asked for the next token already (that step completes first,
   * and its sample is lost). Passing tokens to next() evaluates them instead of the last token
   * alone (it must lead them): that is how function results enter the cache mid-reply. Until
   * `minNewTokens` tokens are out, every end-of-generation token is forbidden in the sampler
   * itself, unless a grammar is in force: a finished grammar allows nothing but the end, and
   * forbidding it left no token to sample.
   */
  async *decode(prompt: readonly Token[], sampling: Sampling, signal: AbortSignal, grammar?: LlamaGrammarEvaluationState | (() => LlamaGrammarEvaluationState | undefined)): AsyncGenerator<Token, void, Token[] | undefined> {
    const stepper = new TokenStepper(this.slot.seq, sampling, this.eog, this.batcher);
    const rules = (sampled: number) => {
      const inForce = typeof grammar === "function" ? grammar() : grammar;
      return { grammar: inForce, noEog: sampled < sampling.minNewTokens && inForce === undefined };
    };
    const leave = this.batcher.enter();
    try {
      let sampled = 0;
      let token = await stepper.step(prompt.slice(this.slot.seq.nextTokenIndex), rules(sampled), signal);
      for (;;) {
        sampled++;
        const inserted: Token[] | undefined = yield token;
        token = await stepper.step(inserted ?? [token], rules(sampled));
      }
    } finally {
      leave();
      stepper.dispose();
    }
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.slot.busy = false;
    this.onRelease();
  }
}
