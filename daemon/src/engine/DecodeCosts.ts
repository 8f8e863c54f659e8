/**
 * What a llama_decode of n tokens costs here, learned as the daemon runs, so a round of n
 * one-token reply steps can go as n single decodes when that is cheaper than one n-token batch.
 *
 * Why: on CPU, llama.cpp computes a one-token batch with matrix-vector kernels and larger ones with
 * matrix-matrix kernels that only pay off with enough rows. Measured on the 2-core bench machine
 * (114M q8_0 model, 1 thread; llama-bench and llama-batched-bench agree): one token 6.5 ms, a
 * 2-token batch 20 ms, 4 tokens 29 ms, 8 tokens 39 ms, 16 tokens 49 ms. So two sessions generate
 * faster one after the other, and sixteen faster together; where the line falls depends on the
 * model, the quantization, the CPU and the thread counts, hence measured, not configured.
 */
export class DecodeCosts {
  private readonly ms = new Map<number, number>();
  private readonly rounds = new Map<number, number>();

  constructor(
    /** Weight of a new measurement in the running average. */
    private readonly alpha = 0.2,
    /** Every this many rounds of a size, the other way is tried once, to follow changes. */
    private readonly explore = 64,
  ) {}

  record(tokens: number, ms: number): void {
    const old = this.ms.get(tokens);
    this.ms.set(tokens, old === undefined ? ms : old + this.alpha * (ms - old));
  }

  estimate(tokens: number): number | undefined {
    return this.ms.get(tokens);
  }

  /** Whether a round of `n` one-token steps should go as n single decodes. */
  split(n: number): boolean {
    if (n < 2) return false;
    const round = (this.rounds.get(n) ?? 0) + 1;
    this.rounds.set(n, round);
    const one = this.ms.get(1);
    const many = this.ms.get(n);
    // Unknown costs are measured first: the batch, then the singles.
    if (many === undefined) return false;
    if (one === undefined) return true;
    // Single decodes cost a thread hop each too: they must win clearly.
    const splitPays = n * one * 1.05 < many;
    return round % this.explore === 0 ? !splitPays : splitPays;
  }
}
