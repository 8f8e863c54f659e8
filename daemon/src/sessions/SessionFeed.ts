import { fail, type ChatEvent } from "@nanollm/shared";

export interface FeedLimits {
  /** Events of finished turns kept for clients that reattach (the running turn's are kept whole). */
  replay: number;
  /** Events a watcher may fall behind before it is dropped. */
  behind: number;
}

/** One client watching a session: where it is in the feed, and how to wake it. */
export class Watcher {
  /** The seq of the last event handed to this watcher. */
  sent: number;
  private readonly stop = new AbortController();
  private wake: (() => void) | undefined;

  constructor(after: number) {
    this.sent = after;
  }

  /** Why the watcher was dropped (it fell too far behind, or the session went away); undefined while it watches. */
  get dropped(): Error | undefined {
    return this.stop.signal.aborted ? (this.stop.signal.reason as Error) : undefined;
  }

  /** Aborted when the watcher is dropped. */
  get stopped(): AbortSignal {
    return this.stop.signal;
  }

  /** Ends the watch with `err`. */
  drop(err: Error): void {
    this.stop.abort(err);
    this.wake?.();
  }

  /** Resolves when the feed has more for this watcher (or dropped it), or `signal` aborts. */
  wait(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.wake = undefined;
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Called once per published event batch: a resolve when the watcher waits, nothing otherwise. */
  notify(): void {
    this.wake?.();
  }
}

/**
 * A session's events, each with its sequence number, and the clients watching them. Publishing is
 * one array push and one wake per waiting watcher: no copy per watcher, and no watcher can slow
 * the turn, since each reads at its own pace from the shared list (the stream writer serializes
 * an event once for all of them) and is dropped past `limits.behind`. The running turn's events
 * are kept whole (a reply is bounded by the context), so a client can always reattach to it; of
 * finished turns, the last `limits.replay` events stay.
 */
export class SessionFeed {
  /** The seq of the last event published (0: none yet). */
  seq = 0;
  private events: ChatEvent[] = [];
  /** The seq of the running turn's first event; 0 when no turn runs. */
  private turnStart = 0;
  private readonly watchers = new Set<Watcher>();

  constructor(
    readonly sessionId: string,
    private readonly limits: FeedLimits,
  ) {}

  /** How many clients watch the session now. */
  get watching(): number {
    return this.watchers.size;
  }

  /** The seq of the last event before the running turn (the last one when none runs): what the history holds. */
  get settled(): number {
    return this.turnStart > 0 ? this.turnStart - 1 : this.seq;
  }

  /** Marks the start of a turn: its events, from the next one on, stay until it ends. */
  begin(): void {
    this.turnStart = this.seq + 1;
  }

  /** The turn ended: its events may leave the buffer like any others. */
  finish(): void {
    this.turnStart = 0;
    this.trim();
  }

  /** Numbers the event, keeps it, and wakes the watchers that wait; returns it with its seq. */
  publish(event: ChatEvent): ChatEvent {
    event.seq = ++this.seq;
    this.events.push(event);
    this.trim();
    for (const w of this.watchers) {
      if (this.seq - w.sent > this.limits.behind) this.drop(w, this.behindError(w));
      else w.notify();
    }
    return event;
  }

  /**
   * A new watcher: from the running turn's start (or the next event when none runs), or after
   * `afterSeq` for a client reattaching (to its turn `turnId`, when given). Throws when those
   * events are not kept any more.
   */
  watch(afterSeq: number | undefined, turnId?: string): Watcher {
    const after = afterSeq ?? this.settled;
    if (after > this.seq) {
      throw fail.outOfRange(`Session ${this.sessionId} has no event ${after} yet (its last is ${this.seq}; the daemon may have restarted); attach without after_seq and read the conversation with GetSession.`);
    }
    if (after + 1 < this.firstSeq()) throw this.goneError(after);
    if (turnId && !this.events.some((e) => e.turnId === turnId)) {
      throw fail.outOfRange(`Turn ${turnId} of session ${this.sessionId} is not kept by this daemon (it restarted, or the session now runs on another one); send the message again.`);
    }
    const watcher = new Watcher(after);
    this.watchers.add(watcher);
    return watcher;
  }

  /** The events after the watcher's last, up to the newest; throws when the watcher was dropped. */
  read(w: Watcher): ChatEvent[] {
    if (w.dropped) throw w.dropped;
    if (w.sent >= this.seq) return [];
    const first = this.firstSeq();
    if (w.sent + 1 < first) throw this.drop(w, this.goneError(w.sent));
    const out = this.events.slice(w.sent + 1 - first);
    w.sent = this.seq;
    return out;
  }

  /** Stops watching (the client left). */
  leave(w: Watcher): void {
    this.watchers.delete(w);
  }

  /** Ends every watcher with `err` (the session was deleted, or the daemon stops). */
  close(err: Error): void {
    for (const w of [...this.watchers]) this.drop(w, err);
  }

  private drop(w: Watcher, err: Error): Error {
    this.watchers.delete(w);
    w.drop(err);
    return err;
  }

  private firstSeq(): number {
    return this.events[0]?.seq ?? this.seq + 1;
  }

  /** Drops the oldest events past the replay limit, never the running turn's. */
  private trim(): void {
    const excess = this.events.length - this.limits.replay;
    if (excess <= 0) return;
    const pinned = this.turnStart > 0 ? Math.max(0, this.turnStart - this.firstSeq()) : excess;
    const drop = Math.min(excess, pinned);
    if (drop > 0) this.events.splice(0, drop);
  }

  private goneError(after: number): Error {
    return fail.outOfRange(
      `The events of session ${this.sessionId} after seq ${after} have left its replay buffer (NANOLLM_REPLAY_EVENTS keeps ${this.limits.replay} besides the running turn); read the conversation with GetSession and attach without after_seq.`,
    );
  }

  private behindError(w: Watcher): Error {
    return fail.exhausted(
      `This watcher fell ${this.seq - w.sent} events behind session ${this.sessionId} (NANOLLM_WATCH_BEHIND_EVENTS allows ${this.limits.behind}) and was dropped; attach again with after_seq ${w.sent} to catch up.`,
    );
  }
}
