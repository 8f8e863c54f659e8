import type { LlamaContext, LlamaModel } from "node-llama-cpp";
import { fail } from "@nanollm/shared";
import { SequenceLease, type Slot } from "./SequenceLease.js";

/**
 * Lends the context's sequences (KV caches) to sessions. A session keeps its sequence between
 * turns; when all are taken, the least recently used idle one is cleared and lent to the newcomer
 * (its session re-prefills on its next turn).
 */
export class SequencePool {
  private readonly slots: Slot[] = [];
  private clock = 0;

  constructor(
    private readonly context: LlamaContext,
    private readonly model: LlamaModel,
  ) {}

  /** The owner's sequence, else a free one, else the least recently used idle one. */
  async acquire(owner: string): Promise<SequenceLease> {
    let slot = this.slots.find((s) => s.owner === owner);
    if (slot?.busy) throw fail.precondition(`Session ${owner} already has a turn running; wait for it to end or cancel it.`);
    slot ??= this.freeSlot();
    const evicted = slot === undefined;
    slot ??= this.leastRecentlyUsedIdle();
    // Claim the slot before awaiting anything, so a concurrent acquire cannot pick it too.
    slot.owner = owner;
    slot.busy = true;
    slot.lastUsed = ++this.clock;
    if (evicted) await slot.seq.clearHistory();
    return new SequenceLease(slot, this.model);
  }

  /** Tokens the owner's sequence holds now (empty when it holds none). */
  cachedTokens(owner: string): readonly number[] {
    return this.slots.find((s) => s.owner === owner)?.seq.contextTokens ?? [];
  }

  /** Frees the owner's sequence, e.g. when its session is deleted or reset. */
  async forget(owner: string): Promise<void> {
    const slot = this.slots.find((s) => s.owner === owner);
    if (!slot || slot.busy) return;
    slot.owner = undefined;
    await slot.seq.clearHistory();
  }

  private freeSlot(): Slot | undefined {
    const idle = this.slots.find((s) => s.owner === undefined);
    if (idle) return idle;
    if (this.context.sequencesLeft === 0) return undefined;
    const slot: Slot = { seq: this.context.getSequence(), owner: undefined, busy: false, lastUsed: 0 };
    this.slots.push(slot);
    return slot;
  }

  private leastRecentlyUsedIdle(): Slot {
    const idle = this.slots.filter((s) => !s.busy).sort((a, b) => a.lastUsed - b.lastUsed)[0];
    if (!idle) {
      throw fail.exhausted(`All ${this.slots.length} KV-cache sequences are generating right now; retry shortly or start the daemon with a larger --parallel.`);
    }
    return idle;
  }
}
