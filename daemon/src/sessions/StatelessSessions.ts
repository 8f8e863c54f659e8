import { randomUUID } from "node:crypto";
import { fail, NanoError } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { FunctionSet } from "../functions/FunctionSet.js";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import { Session, type Caller, type HistoryMessage } from "./Session.js";
import type { SessionStore } from "./SessionStore.js";

/** A whole conversation as a stateless client sends it with every request. */
export interface Conversation {
  host: ModelHost;
  template: ChatTemplate;
  systemPrompt: string;
  functions: FunctionSet;
  /** The messages before this turn; bot replies carry the exact sampled ids where they are remembered. */
  history: HistoryMessage[];
  /** This turn's new messages: a user message, or tool results. */
  lead: HistoryMessage[];
}

/** A session lent to one request; release it when the turn has ended, with the turn's prompt length. */
export interface Claim {
  session: Session;
  release(promptTokens?: number): void;
}
/** Bot replies remembered by their wire form, so a client resending one gets its exact ids back. */
const REMEMBERED_REPLIES = 4096;

/**
 * Sessions for clients that resend the whole conversation with every request (the HTTP APIs). A
 * request runs in the idle session whose KV cache shares the longest prefix with its rendered
 * tokens, so turn N evaluates only its new tokens however many clients interleave. These sessions
 * live in memory only, at most `limit` of them, the least recently used dropped first; a client
 * that pins a session by id gets a journaled one from the store instead, listed with the others.
 */
export class StatelessSessions {
  /** Least recently used first. */
  private readonly sessions = new Map<string, Session>();
  private readonly claimed = new Set<Session>();
  private readonly replies = new Map<string, HistoryMessage>();
  /** Each session's last prompt: a request that shares all of it continues (or regenerates) that chat. */
  private readonly prompts = new WeakMap<Session, number>();

  constructor(
    private readonly store: SessionStore,
    private readonly limit: number,
  ) {}

  /**
   * The session to run `conv`'s turn in, holding the conversation; the pinned one when an id is
   * given. A caller only ever gets its own sessions: another identity's cache is never matched (what
   * it reuses would tell how another user's conversation begins).
   */
  async claim(conv: Conversation, caller: Caller, pinned?: string): Promise<Claim> {
    const session = pinned !== undefined ? await this.pinned(conv, caller, pinned) : this.closest(conv, caller);
    if (this.claimed.has(session) || session.running) throw fail.precondition(`Session ${session.id} already has a turn running; wait for it to end or pin another session.`);
    this.claimed.add(session);
    this.trim();
    const release = (promptTokens?: number) => {
      if (promptTokens !== undefined) this.prompts.set(session, promptTokens);
      this.claimed.delete(session);
      this.trim();
    };
    try {
      await session.cacheSync;
      adopt(session, conv);
    } catch (err) {
      release();
      throw err;
    }
    return { session, release };
  }

  /** Remembers a reply by the form the client will send it back in (`key`, the API's choice). */
  remember(host: ModelHost, caller: Caller, key: string, message: HistoryMessage): void {
    const k = `${host.facts.file}\u0000${caller.name}\u0000${key}`;
    this.replies.delete(k);
    this.replies.set(k, message);
    if (this.replies.size > REMEMBERED_REPLIES) this.replies.delete(this.replies.keys().next().value!);
  }

  /** A reply remembered under `key` for this caller, with its exact ids. */
  recall(host: ModelHost, caller: Caller, key: string): HistoryMessage | undefined {
    return this.replies.get(`${host.facts.file}\u0000${caller.name}\u0000${key}`);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Drops every session and its cache, parked ones included (at shutdown). */
  async dispose(): Promise<void> {
    for (const s of this.sessions.values()) {
      await s.cacheSync;
      await s.host.pool.forget(s.id);
    }
    this.sessions.clear();
  }

  private async pinned(conv: Conversation, caller: Caller, id: string): Promise<Session> {
    let session: Session;
    try {
      session = await this.store.find(id, caller);
    } catch (err) {
      if (!(err instanceof NanoError && err.code === "NOT_FOUND")) throw err;
      return this.store.create({ id, owner: caller.name, host: conv.host, template: "", systemPrompt: conv.systemPrompt, defaults: undefined, history: [], functions: conv.functions });
    }
    if (session.host !== conv.host) throw fail.invalid(`Session ${id} runs model ${session.host.facts.name}; ask for that model or pin another session.`);
    return session;
  }

  /**
   * The idle session sharing the longest prefix with the request's tokens, or a new one. A request
   * takes a session over only when it shares all of that session's last prompt (it is the chat's
   * next turn, or regenerates its last reply): another client's chat that merely starts alike (the
   * same system prompt) gets a session of its own instead of wiping that cache.
   */
  private closest(conv: Conversation, caller: Caller): Session {
    const fresh = new Session(randomUUID(), conv.host, conv.template, "chosen for the model", conv.systemPrompt, {});
    fresh.owner = caller.name;
    fresh.functions = conv.functions;
    fresh.history = conv.history;
    // A session that wrapped renders from a later message; the request is compared rendered alike.
    const rendered = new Map<number, number[]>();
    const tokensFrom = (start: number) => {
      let tokens = rendered.get(start);
      if (!tokens) {
        fresh.windowStart = start;
        rendered.set(start, (tokens = fresh.tokens(conv.lead)));
      }
      return tokens;
    };
    let best: Session | undefined;
    let bestShared = 0;
    for (const s of this.sessions.values()) {
      if (s.host !== conv.host || s.owner !== caller.name || s.running || this.claimed.has(s)) continue;
      const cached = s.host.pool.cachedTokens(s.id);
      // A session whose cache was parked on disk gets back what it rendered.
      const held = cached.length > 0 ? cached : s.rendered();
      const shared = commonPrefix(tokensFrom(s.windowStart <= conv.history.length ? s.windowStart : 0), held);
      if (shared > bestShared && shared >= Math.min(held.length, this.prompts.get(s) ?? held.length)) {
        best = s;
        bestShared = shared;
      }
    }
    fresh.windowStart = 0;
    const session = best ?? fresh;
    this.sessions.delete(session.id);
    this.sessions.set(session.id, session);
    return session;
  }

  /** Drops the least recently used idle sessions past the limit, and their caches. */
  private trim(): void {
    for (const s of this.sessions.values()) {
      if (this.sessions.size <= this.limit) return;
      if (s.running || this.claimed.has(s)) continue;
      this.sessions.delete(s.id);
      void s.cacheSync.then(() => s.host.pool.forget(s.id)).catch(() => undefined);
    }
  }
}

/**
 * Makes the session hold the conversation, keeping its own copy of each leading message the
 * conversation repeats (bot replies there carry the ids the model sampled).
 */
function adopt(session: Session, conv: Conversation): void {
  const mine = session.history;
  let same = 0;
  while (same < conv.history.length && same < mine.length && sameMessage(mine[same]!, conv.history[same]!)) same++;
  session.history = [...mine.slice(0, same), ...conv.history.slice(same)];
  session.windowStart = Math.min(session.windowStart, same);
  session.template = conv.template;
  session.systemPrompt = conv.systemPrompt;
  session.functions = conv.functions;
  session.updatedAt = Date.now();
}

/** The same role, text and images where they stand (a message resent with another picture is another message). */
function sameMessage(a: HistoryMessage, b: HistoryMessage): boolean {
  const shown = (m: HistoryMessage) => (m.images ?? []).map((im) => `${im.sha256}@${im.at ?? 0}`).join(",");
  return a.role === b.role && a.text === b.text && shown(a) === shown(b);
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
