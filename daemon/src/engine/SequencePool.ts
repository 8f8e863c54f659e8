import { fail } from "@nanollm/shared";
import type { ContextLoop } from "./ContextLoop.js";
import type { Images } from "./Images.js";
import type { KvSwap } from "./KvSwap.js";
import { SequenceLease, type Slot } from "./SequenceLease.js";

interface Waiter {
  wake: () => void;
}

/**
 * Lends the context's sequences (KV caches) to sessions. A session keeps its sequence between
 * turns; when all are taken, the least recently used idle one is parked on disk and lent to the
 * newcomer. When every sequence is generating, turns wait in a bounded first-come-first-served
 * queue; past its bound they are refused.
 */
export class SequencePool {
  private readonly slots: Slot[];
  private readonly waiters: Waiter[] = [];
  private clock = 0;

  constructor(
    private readonly loop: ContextLoop,
    sequences: number,
    private readonly eog: Int32Array,
    private readonly maxQueue: number,
    private readonly swap: KvSwap,
    private readonly images: Images | undefined,
  ) {
    this.slots = Array.from({ length: sequences }, (_, seq) => ({ seq, owner: undefined, busy: false, lastUsed: 0 }));
  }

  /** The owner's sequence, else a free one, else the least recently used idle one; waits if none. */
  async acquire(owner: string, signal: AbortSignal): Promise<SequenceLease> {
    // Turns already waiting go first: a newcomer joins the back of the line.
    let front = false;
    if (this.waiters.length > 0) {
      await this.wait(signal, false);
      front = true;
    }
    for (;;) {
      if (signal.aborted) throw fail.cancelled("The turn was cancelled while waiting for a free KV-cache sequence.");
      const lease = this.tryAcquire(owner);
      if (lease) return lease;
      await this.wait(signal, front);
      front = true;
    }
  }

  /** How many tokens the owner's sequence holds now (0 when it holds none). */
  cachedLength(owner: string): number {
    const slot = this.slots.find((s) => s.owner === owner);
    return slot ? this.loop.cachedLength(slot.seq) : 0;
  }

  /** Tokens the owner's sequence holds now (empty when it holds none). */
  cachedTokens(owner: string): readonly number[] {
    const slot = this.slots.find((s) => s.owner === owner);
    return slot ? this.loop.cached(slot.seq) : [];
  }

  /** Frees the owner's sequence, e.g. when its session is deleted or reset. */
  async forget(owner: string): Promise<void> {
    await this.swap.drop(owner);
    const slot = this.slots.find((s) => s.owner === owner);
    if (!slot || slot.busy) return;
    slot.owner = undefined;
    await this.loop.clear(slot.seq);
  }

  /** Parks every idle session's cache on disk (at shutdown), so a restart resumes without re-prefill. */
  async saveAll(): Promise<void> {
    for (const slot of this.slots) if (slot.owner !== undefined && !slot.busy) await this.swap.save(slot.owner, this.loop, slot.seq);
  }

  private tryAcquire(owner: string): SequenceLease | undefined {
    const own = this.slots.find((s) => s.owner === owner);
    if (own?.busy) throw fail.precondition(`Session ${owner} already has a turn running; wait for it to end or cancel it.`);
    const slot = own ?? this.slots.find((s) => s.owner === undefined) ?? this.leastRecentlyUsedIdle();
    if (!slot) return undefined;
    const previous = slot.owner !== owner ? slot.owner : undefined;
    const fresh = slot.owner !== owner;
    slot.owner = owner;
    slot.busy = true;
    slot.lastUsed = ++this.clock;
    return new SequenceLease(slot, this.loop, this.eog, { previous, fresh, swap: this.swap }, () => this.onRelease(), this.images);
  }

  private wait(signal: AbortSignal, front: boolean): Promise<void> {
    if (!front && this.waiters.length >= this.maxQueue) {
      throw fail.exhausted(`All ${this.slots.length} KV-cache sequences are busy and ${this.waiters.length} turns are already waiting; retry shortly or start the daemon with a larger --parallel.`);
    }
    return new Promise<void>((resolve) => {
      const waiter: Waiter = {
        wake: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      if (front) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
    });
  }

  private onRelease(): void {
    this.waiters.shift()?.wake();
  }

  private leastRecentlyUsedIdle(): Slot | undefined {
    return this.slots.filter((s) => !s.busy).sort((a, b) => a.lastUsed - b.lastUsed)[0];
  }
}
