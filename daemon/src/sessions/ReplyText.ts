/**
 * Turns the growing list of reply tokens into text deltas. Text is held back while it could still
 * become a stop string or ends in an incomplete UTF-8 character, so stop text is never shown.
 */
export class ReplyText {
  private emitted = 0;
  private full = "";
  private stopAt = -1;

  // Text of ids[0, baseIds) is settled, so each update detokenizes only the tail: a long reply
  // would otherwise cost O(n²) (measured: 758 → 263 tok/s from 400- to 4000-token replies).
  private baseIds = 0;
  private baseText = "";
  private readonly longestStop: number;

  constructor(
    /** Text of `ids`; `before` are the tokens just ahead of them (for leading spaces). */
    private readonly detokenize: (ids: readonly number[], before: readonly number[]) => string,
    private readonly stops: readonly string[],
  ) {
    this.longestStop = stops.reduce((n, s) => Math.max(n, s.length), 0);
  }

  /** Recomputes the text for `ids`; returns the newly safe delta and whether a stop string appeared. */
  update(ids: readonly number[]): { delta: string; stopped: boolean } {
    const tail = this.detokenize(ids.slice(this.baseIds), ids.slice(Math.max(0, this.baseIds - 8), this.baseIds));
    this.full = this.baseText + tail;
    if (ids.length - this.baseIds > 64 && !this.full.endsWith("\uFFFD")) {
      this.baseIds = ids.length;
      this.baseText = this.full;
    }
    const searchFrom = Math.max(0, this.emitted - this.longestStop);
    for (const stop of this.stops) {
      const at = this.full.indexOf(stop, searchFrom);
      if (at >= 0 && (this.stopAt < 0 || at < this.stopAt)) this.stopAt = at;
    }
    if (this.stopAt >= 0) return { delta: this.take(this.stopAt), stopped: true };
    return { delta: this.take(this.safeEnd()), stopped: false };
  }

  /** Everything not yet emitted (at the end of the reply). */
  flush(): string {
    return this.take(this.stopAt >= 0 ? this.stopAt : this.full.length);
  }

  /** Everything generated so far, stop text included. */
  get text(): string {
    return this.full;
  }

  /** The reply's visible text: everything before a stop string. */
  get final(): string {
    return this.stopAt >= 0 ? this.full.slice(0, this.stopAt) : this.full;
  }

  private safeEnd(): number {
    let end = this.full.length;
    while (end > this.emitted && this.full[end - 1] === "\uFFFD") end--;
    let hold = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, end); n > hold; n--) {
        if (this.full.endsWith(stop.slice(0, n), end)) {
          hold = n;
          break;
        }
      }
    }
    return Math.max(end - hold, this.emitted);
  }

  private take(end: number): string {
    const delta = end > this.emitted ? this.full.slice(this.emitted, end) : "";
    this.emitted = Math.max(this.emitted, end);
    return delta;
  }
}
