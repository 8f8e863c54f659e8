import { fail } from "@nanollm/shared";
import type { RunningTurn } from "./Session.js";

/** Turns that may wait behind a session's running one; more are refused. */
export const MAX_QUEUED_TURNS = 16;

/**
 * One writer at a time: a session's turns run one after another in the order they came. The
 * running turn is `holder.running`; leaving hands the session straight to the next waiting turn,
 * so no other caller finds it idle in between.
 */
export class TurnQueue {
  private readonly waiting: { turn: RunningTurn; start: () => void }[] = [];

  constructor(private readonly holder: { readonly id: string; running: RunningTurn | undefined }) {}

  /** Turns waiting for the running one. */
  get length(): number {
    return this.waiting.length;
  }

  /**
   * Makes `turn` the running one, after those ahead of it when `wait`; refuses at once when the
   * session is busy and `wait` is false. A turn cancelled while it waits leaves the queue.
   */
  async enter(turn: RunningTurn, signal: AbortSignal, wait: boolean): Promise<void> {
    const id = this.holder.id;
    if (!this.holder.running) {
      this.holder.running = turn;
      return;
    }
    if (!wait) throw fail.precondition(`Session ${id} already has a turn running; send again when it ends, or without --no-wait to queue behind it.`);
    if (this.waiting.length >= MAX_QUEUED_TURNS) throw fail.exhausted(`Session ${id} already has ${MAX_QUEUED_TURNS} turns waiting; send again when some have run.`);
    if (signal.aborted) throw fail.cancelled(`The turn was cancelled before session ${id} was free.`);
    await new Promise<void>((resolve, reject) => {
      const entry = {
        turn,
        start: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(entry), 1);
        reject(fail.cancelled(`The turn was cancelled while it waited for session ${id}'s running turn.`));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /** The running turn is over: the next waiting one runs. */
  leave(): void {
    const next = this.waiting.shift();
    this.holder.running = next?.turn;
    next?.start();
  }
}
