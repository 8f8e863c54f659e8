import { fail } from "@nanollm/shared";

/**
 * Every turn passes it: it counts the running ones, and once the daemon drains (SIGTERM) it
 * refuses new ones, so a balancer's retry lands them on another daemon while these finish.
 */
export class TurnGate {
  private running = 0;
  private closed = false;
  private readonly waiters: (() => void)[] = [];

  /** Admits a turn; call the returned function when it has ended. Refused once draining. */
  enter(): () => void {
    if (this.closed) throw fail.unavailable("The daemon is shutting down and takes no new turns; send the turn again to reach another daemon, or once it has restarted.");
    this.running++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      if (--this.running === 0) for (const wake of this.waiters.splice(0)) wake();
    };
  }

  /** Refuses new turns from now on. */
  close(): void {
    this.closed = true;
  }

  get draining(): boolean {
    return this.closed;
  }

  get size(): number {
    return this.running;
  }

  /** Resolves when no turn runs. */
  idle(): Promise<void> {
    return this.running === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
