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
 * queue; past its bound they are refused. When the model is unloaded the pool is detached from
 * its context (every cache parked) and attached to the next one, so sessions keep their pool.
 */
export class SequencePool {
  private slots: Slot[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly settling: (() => void)[] = [];
  private clock = 0;
  private loop: ContextLoop | undefined;
  private images: Images | undefined;

  constructor(
    loop: ContextLoop,
    sequences: number,
    private readonly eog: Int32Array,
    private readonly maxQueue: number,
    private readonly swap: KvSwap,
    images: Images | undefined,
  ) {
    this.attach(loop, sequences, images);
  }

  /** Lends the sequences of a (new) context; every session's cache starts parked or empty. */
  attach(loop: ContextLoop, sequences: number, images: Images | undefined): void {
    this.loop = loop;
    this.images = images;
    this.slots = Array.from({ length: sequences }, (_, seq) => ({ seq, owner: undefined, busy: false, lastUsed: 0 }));
  }

  /** Parks every cache on disk and lets go of the context (the model is being unloaded); call once settled. */
  async detach(): Promise<void> {
    await this.saveAll();
    this.loop = undefined;
    this.images = undefined;
    this.slots = [];
  }

  /** Whether a sequence is lent now (a turn runs, or a cache is being brought up to date). */
  get busy(): boolean {
    return this.slots.some((s) => s.busy);
  }

  /** Resolves once no sequence is lent. */
  settled(): Promise<void> {
    return this.busy ? new Promise((resolve) => this.settling.push(resolve)) : Promise.resolve();
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
    return slot && this.loop ? this.loop.cachedLength(slot.seq) : 0;
  }

  /** Tokens the owner's sequence holds now (empty when it holds none). */
  cachedTokens(owner: string): readonly number[] {
    const slot = this.slots.find((s) => s.owner === owner);
    return slot && this.loop ? this.loop.cached(slot.seq) : [];
  }

  /** Frees the owner's sequence, e.g. when its session is deleted or reset. */
  async forget(owner: string): Promise<void> {
    await this.swap.drop(owner);
    const slot = this.slots.find((s) => s.owner === owner);
    if (!slot || slot.busy || !this.loop) return;
    slot.owner = undefined;
    await this.loop.clear(slot.seq);
  }

  /** Parks every idle session's cache on disk (at shutdown), so a restart resumes without re-prefill. */
  async saveAll(): Promise<void> {
    const loop = this.loop;
    if (!loop) return;
    for (const slot of this.slots) if (slot.owner !== undefined && !slot.busy) await this.swap.save(slot.owner, loop, slot.seq);
  }

  private tryAcquire(owner: string): SequenceLease | undefined {
    const loop = this.loop;
    if (!loop) throw fail.unavailable("The model was unloaded while the turn waited; send the message again.");
    const own = this.slots.find((s) => s.owner === owner);
    if (own?.busy) throw fail.precondition(`Session ${owner} already has a turn running; wait for it to end or cancel it.`);
    const slot = own ?? this.slots.find((s) => s.owner === undefined) ?? this.leastRecentlyUsedIdle();
    if (!slot) return undefined;
    const previous = slot.owner !== owner ? slot.owner : undefined;
    const fresh = slot.owner !== owner;
    slot.owner = owner;
    slot.busy = true;
    slot.lastUsed = ++this.clock;
    return new SequenceLease(slot, loop, this.eog, { previous, fresh, swap: this.swap }, () => this.onRelease(), this.images);
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
    if (!this.busy) for (const resolve of this.settling.splice(0)) resolve();
  }

  private leastRecentlyUsedIdle(): Slot | undefined {
    return this.slots.filter((s) => !s.busy).sort((a, b) => a.lastUsed - b.lastUsed)[0];
  }
}
