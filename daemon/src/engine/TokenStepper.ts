import type { LlamaContextSequence, LlamaGrammarEvaluationState } from "node-llama-cpp";
import { fail } from "@nanollm/shared";
import type { Sampling, Token } from "./types.js";

// node-llama-cpp internals (pinned 3.22.1) a decode step goes through: the context's decode queue
// (shared with every other sequence, so steps still batch and obey decodeFirst), the native
// sampler, and the sequence's own record of what its cache holds.
interface NativeSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}
type Sampled = number | Error;
interface SequenceInternals {
  _sequenceId: number;
  _nextTokenIndex: number;
  _contextTokens: Token[];
  _tokenMeter: unknown;
  contextSize: number;
  _context: {
    _ctx: { sampleToken(batchLogitIndex: number, sampler: NativeSampler): Promise<number> };
    _decodeTokens(
      item: { sequenceId: number; tokens: Token[]; firstTokenSequenceIndex: number; logits: boolean[]; evaluationPriority: number; tokenMeter: unknown },
      sample: (batchLogitIndex: number) => Promise<Sampled>,
    ): Promise<[number, Sampled][]>;
  };
  model: { _llama: { _bindings: { AddonSampler: new (model: unknown) => NativeSampler } }; _model: unknown };
}

const EVALUATION_PRIORITY = 5;
const REPEAT_WINDOW = 64;

/** What may change between the steps of one reply. */
export interface StepRules {
  /** Forbid every end-of-generation token (min_new_tokens not reached yet). */
  noEog: boolean;
  grammar: LlamaGrammarEvaluationState | undefined;
}

/**
 * One reply's decode steps: evaluates the given tokens at the end of the sequence and samples the
 * next one, in one trip through node-llama-cpp's context queue. `sequence.evaluate()` does the same
 * through a per-token async generator, a sequence lock, a sampler lock, and a sampler
 * configuration rebuilt and sent to native code every token; all of that ran on the event loop
 * (the thread that also streams the replies), and on 2 cores every 1 ms of event-loop work during
 * a step slowed llama_decode by ~1.5 ms (measured, bench/probe notes in README "Threads"). Here the
 * native sampler is configured once and again only when a rule changes (repetition penalty:
 * every token, as before).
 */
export class TokenStepper {
  private readonly seq: SequenceInternals;
  private readonly sampler: NativeSampler;
  private readonly base: Record<string, unknown>;
  private applied: StepRules | undefined;

  constructor(
    sequence: LlamaContextSequence,
    private readonly sampling: Sampling,
    private readonly eog: { keys: Uint32Array; values: Float32Array },
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

  /** Evaluates `tokens` (the last sampled token, maybe followed by inserted ones) and samples the next. */
  async step(tokens: Token[], rules: StepRules): Promise<Token> {
    const seq = this.seq;
    const first = seq._nextTokenIndex;
    if (first + tokens.length >= seq.contextSize) throw fail.internal("The reply ran past the end of its sequence's context.");
    this.configure(rules);
    const logits: boolean[] = [];
    logits[tokens.length - 1] = true;
    const ctx = seq._context._ctx;
    // A sampling error is returned, not thrown: a rejection inside node-llama-cpp's batch dispatch
    // never settles the waiting step (the turn would hang).
    const results = await seq._context._decodeTokens(
      { sequenceId: seq._sequenceId, tokens, firstTokenSequenceIndex: first, logits, evaluationPriority: EVALUATION_PRIORITY, tokenMeter: seq._tokenMeter },
      (index) => ctx.sampleToken(index, this.sampler).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err)))),
    );
    seq._nextTokenIndex = first + tokens.length;
    seq._contextTokens.push(...tokens);
    const sampled = results[results.length - 1]?.[1];
    if (sampled instanceof Error) throw fail.internal(`llama.cpp could not sample a token: ${sampled.message}`);
    if (typeof sampled !== "number" || sampled < 0) throw fail.internal("llama.cpp sampled no token.");
    return sampled;
  }

  dispose(): void {
    this.sampler.dispose();
  }

  private configure(rules: StepRules): void {
    const penalty = this.sampling.repetitionPenalty !== 1;
    const same = this.applied && this.applied.noEog === rules.noEog && this.applied.grammar === rules.grammar;
    if (same && !penalty) return;
    const config: Record<string, unknown> = { ...this.base };
    if (rules.noEog && this.eog.keys.length > 0) Object.assign(config, { tokenBiasKeys: this.eog.keys, tokenBiasValues: this.eog.values });
    if (rules.grammar) config.grammarEvaluationState = (rules.grammar as unknown as { _state: unknown })._state;
    if (penalty) {
      const recent = this.seq._contextTokens.slice(-REPEAT_WINDOW);
      Object.assign(config, { repeatPenalty: this.sampling.repetitionPenalty, repeatPenaltyMaxTokens: REPEAT_WINDOW, repeatPenaltyTokens: Uint32Array.from(recent) });
    }
    this.sampler.applyConfig(config);
    this.applied = { ...rules };
  }
}
