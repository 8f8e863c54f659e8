import type { LlamaContextSequence, LlamaGrammarEvaluationState } from "node-llama-cpp";
import { fail } from "@nanollm/shared";
import type { StepBatcher } from "./StepBatcher.js";
import type { Sampling, Token } from "./types.js";

// node-llama-cpp internals (pinned 3.22.1): the native sampler, and the sequence's own record of
// what its cache holds (kept true here, as its evaluate() would).
interface NativeSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}
interface SequenceInternals {
  _contextTokens: Token[];
  model: { _llama: { _bindings: { AddonSampler: new (model: unknown) => NativeSampler } }; _model: unknown };
}

const REPEAT_WINDOW = 64;

/** What may change between the steps of one reply. */
export interface StepRules {
  /** Forbid every end-of-generation token (min_new_tokens not reached yet). */
  noEog: boolean;
  grammar: LlamaGrammarEvaluationState | undefined;
}

/**
 * One reply's decode steps: each evaluates the given tokens at the end of the sequence, in the
 * batcher's shared step, and samples the next token with this reply's native sampler. The sampler
 * is configured once, and again only when a rule changes (with a repetition penalty: every token,
 * as node-llama-cpp does).
 */
export class TokenStepper {
  private readonly seq: SequenceInternals;
  private readonly sampler: NativeSampler;
  private readonly base: Record<string, unknown>;
  private applied: StepRules | undefined;

  constructor(
    private readonly sequence: LlamaContextSequence,
    private readonly sampling: Sampling,
    private readonly eog: { keys: Uint32Array; values: Float32Array },
    private readonly batcher: StepBatcher,
  ) {
    this.seq = sequence as unknown as SequenceInternals;
    this.sampler = new this.seq.model._llama._bindings.AddonSampler(this.seq.model._model);
    // The same settings sequence.evaluate() derived from these options.
    this.base = {
      temperature: sampling.doSample ? sampling.temperature : 0,
      minP: 0,
      topK: sampling.topK,
      topP: sampling.topP,
      seed: Math.max(0, Math.floor(sampling.seed)),
    };
  }

  /**
   * Evaluates `tokens` (the rest of the prompt, or the last sampled token maybe followed by
   * inserted ones) and samples the next; `signal` stops a long evaluation between batches.
   */
  async step(tokens: readonly Token[], rules: StepRules, signal?: AbortSignal): Promise<Token> {
    this.configure(rules, tokens);
    const sampled = await this.batcher.evaluate(this.sequence, tokens, { sampler: this.sampler, signal });
    if (!sampled) throw fail.internal("A decode step ended without a sample.");
    if ("error" in sampled) throw sampled.error;
    return sampled.token;
  }

  dispose(): void {
    this.sampler.dispose();
  }

  /** `next`: the tokens this step evaluates, which the repetition penalty must see too. */
  private configure(rules: StepRules, next: readonly Token[]): void {
    const penalty = this.sampling.repetitionPenalty !== 1;
    const same = this.applied && this.applied.noEog === rules.noEog && this.applied.grammar === rules.grammar;
    if (same && !penalty) return;
    const config: Record<string, unknown> = { ...this.base };
    if (rules.noEog && this.eog.keys.length > 0) Object.assign(config, { tokenBiasKeys: this.eog.keys, tokenBiasValues: this.eog.values });
    if (rules.grammar) config.grammarEvaluationState = (rules.grammar as unknown as { _state: unknown })._state;
    if (penalty) {
      // The same window the native sampler keeps itself, so it is not rebuilt every token.
      const recent = [...this.seq._contextTokens.slice(-REPEAT_WINDOW), ...next].slice(-REPEAT_WINDOW);
      Object.assign(config, { repeatPenalty: this.sampling.repetitionPenalty, repeatPenaltyMaxTokens: REPEAT_WINDOW, repeatPenaltyTokens: Uint32Array.from(recent) });
    }
    this.sampler.applyConfig(config);
    this.applied = { ...rules };
  }
}
