import type { ChatEvent } from "@nanollm/shared";

/** A turn this chat sent: its message, and how far the screen has shown it. */
export interface OwnTurn {
  text: string;
  started: boolean;
  ended: boolean;
  /** Called when the screen has shown the turn's end. */
  shown?: () => void;
}

/**
 * Which of a session's events are on the screen: each seq once, in order. While the watch
 * delivers, it alone shows events (the session's one order); this chat's turn stream shows
 * them only when there is no watch (a daemon without Attach, a lost connection).
 */
export class SessionView {
  watching = false;
  private sessionId = "";
  private last = 0;
  private readonly own = new Map<string, OwnTurn>();

  /** Follows `sessionId` from after `seq` (unknown: from the next event that comes). */
  reset(sessionId: string, seq: number | undefined): void {
    if (sessionId === this.sessionId && seq !== undefined && seq <= this.last) return;
    this.sessionId = sessionId;
    this.last = seq ?? 0;
  }

  send(turnId: string, text: string): OwnTurn {
    const turn = { text, started: false, ended: false };
    this.own.set(turnId, turn);
    return turn;
  }

  mine(turnId: string): OwnTurn | undefined {
    return this.own.get(turnId);
  }

  /** Whether the event is new to the screen (and so to be shown now). */
  take(event: ChatEvent, fromTurnStream: boolean): boolean {
    if (fromTurnStream && this.watching) return false;
    if (event.sessionId !== this.sessionId && this.sessionId !== "") return fromTurnStream;
    // An event without a seq (an older daemon) is shown as it comes.
    if (!event.seq) return true;
    if (event.seq <= this.last) return false;
    this.last = event.seq;
    return true;
  }
}
