import { setTimeout as sleep } from "node:timers/promises";
import { fail } from "@nanollm/shared";
import type { Held } from "../Journal.js";
import type { Database } from "./Database.js";

/** How often a waiting turn asks whether the other daemon's lease ended. */
const POLL_MS = 200;

/** A held lease: aborted when lost; `renewedAt` is when the last renewal that reached the database was sent. */
interface Lease {
  lost: AbortController;
  renewedAt: number;
  /** Taken (not still waiting for another daemon's): only these are renewed. */
  taken: boolean;
  /** Stops the turn if no renewal gets through before the lease may have expired. */
  fence?: NodeJS.Timeout;
}

/**
 * Per-session leases in the database: a row names the daemon that holds the session and when the
 * lease expires (the database's clock, so daemons' clocks need not agree). Held leases are renewed
 * every third of their lifetime; a daemon that dies stops renewing, and its leases expire within
 * `ttlMs`, after which another daemon takes the session over. A daemon cut off from the database
 * stops its own turns before its leases can have expired (it cannot know whether another took over).
 */
export class Leases {
  /** Held leases by session id. */
  private readonly held = new Map<string, Lease>();
  private timer: NodeJS.Timeout | undefined;
  private renewing = false;

  constructor(
    private readonly db: Database,
    /** This daemon's name in the lease rows. */
    readonly holder: string,
    readonly ttlMs: number,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Takes the session's lease. Held by another daemon, it waits (polling) up to a lease lifetime
   * and a second, which is long enough for a dead holder's lease to expire; past that the other
   * daemon is alive and generating, and the request is refused with one sentence.
   */
  async take(id: string, signal?: AbortSignal): Promise<Held> {
    if (this.held.has(id)) throw fail.precondition(`Session ${id} already has a turn running; wait for it to end or cancel it.`);
    // Reserved at once, so a second request here does not race this one to the database.
    const lease: Lease = { lost: new AbortController(), renewedAt: 0, taken: false };
    this.held.set(id, lease);
    try {
      const deadline = Date.now() + this.ttlMs + 1000;
      for (;;) {
        lease.renewedAt = Date.now();
        const [row] = await this.db.query<{ holder: string }>(
          `INSERT INTO nanollm_leases AS l (session_id, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
           ON CONFLICT (session_id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
           WHERE l.expires_at < now() OR l.holder = excluded.holder
           RETURNING holder`,
          [id, this.holder, this.ttlMs / 1000],
        );
        if (row) break;
        if (signal?.aborted) throw fail.cancelled("The turn was cancelled while waiting for another daemon's turn in the session to end.");
        if (Date.now() >= deadline) {
          const [other] = await this.db.query<{ holder: string }>("SELECT holder FROM nanollm_leases WHERE session_id = $1", [id]);
          throw fail.precondition(`Session ${id} has a turn running on another daemon (${other?.holder ?? "gone now"}); wait for it to end, or cancel it there.`);
        }
        await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
      }
    } catch (err) {
      this.held.delete(id);
      throw err;
    }
    lease.taken = true;
    this.arm(id, lease);
    this.timer ??= setInterval(() => void this.renew(), this.ttlMs / 3).unref();
    return { lost: lease.lost.signal, release: () => this.release(id, lease) };
  }

  /** Gives back every lease this daemon holds (at shutdown, after its turns ended). */
  async releaseAll(): Promise<void> {
    this.stopTimer(true);
    for (const lease of this.held.values()) clearTimeout(lease.fence);
    this.held.clear();
    try {
      await this.db.query("DELETE FROM nanollm_leases WHERE holder = $1", [this.holder]);
    } catch (err) {
      this.log(`could not release this daemon's session leases (${(err as Error).message}); they expire in ${this.ttlMs / 1000} s`);
    }
  }

  private async release(id: string, lease: Lease): Promise<void> {
    if (this.held.get(id) !== lease) return;
    clearTimeout(lease.fence);
    this.held.delete(id);
    this.stopTimer(false);
    try {
      await this.db.query("DELETE FROM nanollm_leases WHERE session_id = $1 AND holder = $2", [id, this.holder]);
    } catch (err) {
      // The lease expires by itself; the turn it guarded has ended well.
      this.log(`could not release the lease of session ${id} (${(err as Error).message}); it expires in ${this.ttlMs / 1000} s`);
    }
  }

  /**
   * Sets the lease's fence: five sixths of a lifetime after its last renewal was sent (a sixth is
   * the margin for clock rates and the turn's own stopping), the turn stops unless renewed since.
   */
  private arm(id: string, lease: Lease): void {
    clearTimeout(lease.fence);
    const fenceOff = () => {
      if (lease.lost.signal.aborted || this.held.get(id) !== lease) return;
      this.log(`could not renew the lease of session ${id} for ${((Date.now() - lease.renewedAt) / 1000).toFixed(1)} s; its turn here is stopped, another daemon may take the session over`);
      lease.lost.abort(fail.unavailable(`This daemon lost the session store for longer than session ${id}'s lease, so it stopped the turn; send it again.`));
    };
    lease.fence = setTimeout(fenceOff, lease.renewedAt + (this.ttlMs * 5) / 6 - Date.now()).unref();
  }

  /** Extends every held lease; one that another daemon holds now is reported lost. */
  private async renew(): Promise<void> {
    // The leases as they are when the renewal is sent: one released and taken again meanwhile is judged by its own take.
    const sent = [...this.held].filter(([, lease]) => lease.taken);
    if (this.renewing || sent.length === 0) return;
    this.renewing = true;
    const asked = Date.now();
    try {
      // Not "if unexpired": a lease that lapsed while the database was down, and that nobody took, is still ours.
      const rows = await this.db.query<{ session_id: string }>(
        "UPDATE nanollm_leases SET expires_at = now() + make_interval(secs => $3) WHERE holder = $1 AND session_id = ANY($2) RETURNING session_id",
        [this.holder, sent.map(([id]) => id), this.ttlMs / 1000],
      );
      const renewed = new Set(rows.map((r) => r.session_id));
      for (const [id, lease] of sent) {
        if (this.held.get(id) !== lease) continue;
        if (renewed.has(id)) {
          lease.renewedAt = asked;
          this.arm(id, lease);
          continue;
        }
        this.log(`lost the lease of session ${id} to another daemon; its turn here is stopped`);
        lease.lost.abort(fail.unavailable(`Session ${id} was taken over by another daemon while this one generated (its lease expired); send the turn again.`));
      }
    } catch (err) {
      this.log(`could not renew ${sent.length} session lease(s) (${(err as Error).message}); retrying in ${(this.ttlMs / 3000).toFixed(1)} s`);
    } finally {
      this.renewing = false;
    }
  }

  private stopTimer(always: boolean): void {
    if (this.timer && (always || this.held.size === 0)) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
