import { randomUUID } from "node:crypto";
import { fail, type GenerationParams } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { TemplateRegistry } from "../templates/TemplateRegistry.js";
import { chooseTemplate } from "../templates/chooseTemplate.js";
import { checkParams } from "./params.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import { checkText, MAX_HISTORY_MESSAGES } from "./limits.js";
import { ImageStore } from "./ImageStore.js";
import { Session, type Caller, type HistoryMessage, type OverflowPolicy } from "./Session.js";
import type { SessionRecord } from "./SessionJournal.js";
import { copyOf, refresh, toRecord } from "./records.js";
import { isShared, type Held, type ImageBytes, type Journal, type SharedJournal, type Stored } from "./Journal.js";
import { DEFAULT_FEED_LIMITS } from "./Session.js";
import { SessionFeed, type FeedLimits } from "./SessionFeed.js";

/** The fewest characters of an id that find a session (the TUI shows 8). */
const MIN_PREFIX = 4;

/** The fields of `p` that are set (proto3 optionals arrive as undefined when unset). */
function definedOnly<T extends object>(p: T): Partial<T> {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface CreateOptions {
  host: ModelHost;
  /** Template name; empty means chosen from the model. */
  template: string;
  /** A template's JSON text (read by the client); set, it replaces `template`. */
  templateJson?: string;
  systemPrompt: string | undefined;
  defaults: GenerationParams | undefined;
  /** A conversation to start from (e.g. to replay a transcript); bot ids are kept when given. */
  history: HistoryMessage[];
  overflow?: OverflowPolicy;
  functions?: FunctionSet;
  /** The creating identity's name. */
  owner: string;
  /** The session's id (a client pinning one by name); a new UUID when absent. */
  id?: string;
}

/**
 * Owns every session: creation, lookup, reset and deletion. With a shared journal (PostgreSQL)
 * the sessions in memory are copies: each request reads the session's revision, a session this
 * daemon does not hold (or holds at an older revision) is read from the journal, and changes and
 * turns take the session's lease first.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** Every session's images, by hash (under the data folder when there is one, or in the shared journal). */
  readonly images: ImageBytes;
  /** The journal when other daemons share it. */
  readonly shared: SharedJournal | undefined;
  /**
   * The loaded model a journaled session runs on (`load`: loading it if need be); set by the
   * daemon. Undefined when it is not here.
   */
  hostFor: (modelFile: string, load: boolean) => Promise<ModelHost | undefined> = async () => undefined;
  /** How many events each session keeps for reattaching clients, and lets a watcher fall behind. */
  feedLimits: FeedLimits = DEFAULT_FEED_LIMITS;

  constructor(
    readonly templates: TemplateRegistry,
    readonly journal: Journal | undefined,
    private readonly maxSessions = 1024,
    dataDir?: string,
    /** Sessions one owner may keep (NANOLLM_MAX_SESSIONS_PER_OWNER); a function so identities can vary it. */
    private readonly quota: (owner: string) => number = () => maxSessions,
    private readonly log: (line: string) => void = () => {},
  ) {
    this.shared = isShared(journal) ? journal : undefined;
    this.images = this.shared?.images ?? new ImageStore(dataDir);
  }

  async create(opts: CreateOptions): Promise<Session> {
    const owner = opts.owner;
    await this.checkQuota(owner);
    checkParams(opts.defaults);
    checkText("The system prompt", opts.systemPrompt);
    if (opts.history.length > MAX_HISTORY_MESSAGES) throw fail.invalid(`The given history has ${opts.history.length} messages, more than the limit of ${MAX_HISTORY_MESSAGES}; send a shorter one.`);
    opts.history.forEach((m, i) => checkText(`History message ${i}`, m.text));
    const { template, reason } = opts.templateJson
      ? { template: this.templates.parse(opts.templateJson), reason: "requested" }
      : opts.template
        ? { template: this.templates.resolve(opts.template), reason: "requested" }
        : chooseTemplate(opts.host.facts, this.templates);
    if (opts.id !== undefined && (this.sessions.has(opts.id) || this.journal?.holds?.(opts.id))) throw fail.precondition(`Session ${opts.id} exists already; use it or pick another id.`);
    const session = new Session(opts.id ?? randomUUID(), opts.host, template, reason, opts.systemPrompt ?? template.system_prompt ?? "", opts.defaults ?? {});
    session.owner = owner;
    for (const msg of opts.history) {
      const bad = msg.tokens.find((id) => !opts.host.isValidToken(id));
      if (bad !== undefined) throw fail.invalid(`History token id ${bad} is not in the model's vocabulary of ${opts.host.vocabSize}; send bot messages as text only.`);
      session.history.push({ ...msg, tokens: msg.tokens.length ? msg.tokens : (await session.text.prepare(msg.text)).slice() });
    }
    session.overflow = opts.overflow ?? "wrap";
    // Set before the size check: the functions' docs are part of the rendered prompt.
    session.functions = opts.functions ?? FunctionSet.none;
    await session.prepareText();
    const used = session.contextUsed();
    if (used >= session.contextSize) throw fail.invalid(`The given history is ${used} tokens, more than the context of ${session.contextSize}; send a shorter history.`);
    // Checked again: other creates may have finished while this one tokenized.
    await this.checkQuota(owner);
    this.track(session);
    try {
      await session.persist();
    } catch (err) {
      // A session the journal does not hold would vanish at the next restart: it never existed.
      this.sessions.delete(session.id);
      throw err;
    }
    return session;
  }

  /** Refuses a new session past the daemon's limit or the owner's quota (counted in a shared journal when there is one). */
  private async checkQuota(owner: string): Promise<void> {
    const total = this.shared ? await this.shared.count(undefined) : this.sessions.size;
    if (total >= this.maxSessions) {
      throw fail.exhausted(`The daemon already keeps ${total} sessions, its limit (NANOLLM_MAX_SESSIONS); delete old ones with \`nanollm sessions prune --older-than 7d\` (or \`sessions rm ID\`), or raise NANOLLM_MAX_SESSIONS.`);
    }
    const quota = this.quota(owner);
    let owned = 0;
    if (this.shared) owned = await this.shared.count(owner);
    else for (const s of this.sessions.values()) if (s.owner === owner) owned++;
    if (owned >= quota) {
      throw fail.exhausted(`You already keep ${owned} sessions, your quota (NANOLLM_MAX_SESSIONS_PER_OWNER); delete some with \`nanollm sessions rm ID\`.`);
    }
  }

  /**
   * Brings back a journaled session; its KV cache is rebuilt by its next turn. The record is
   * checked as a request would be (settings, template, functions, token ids); a bad one throws and
   * is quarantined by the caller.
   */
  restore(record: SessionRecord, host: ModelHost, revision = 0): Session {
    if (this.sessions.has(record.id)) throw new Error(`session ${record.id} is already loaded`);
    const session = copyOf(record, host, revision);
    this.track(session);
    return session;
  }

  private track(session: Session): void {
    session.imageStore = this.images;
    session.feed = new SessionFeed(session.id, this.feedLimits);
    const journal = this.journal;
    if (journal) {
      session.persist = async () => {
        session.revision = await journal.save(toRecord(session), session.revision);
      };
    }
    if (this.shared) session.hold = (signal) => this.holdShared(session, signal);
    this.sessions.set(session.id, session);
  }

  /**
   * get() for a request. With a shared journal: the session as the journal has it now, read from
   * it when this daemon holds no copy or an older one (a copy with a turn running here is the latest).
   */
  async find(idOrPrefix: string, caller: Caller): Promise<Session> {
    const shared = this.shared;
    if (!shared) return this.get(idOrPrefix, caller);
    const heads = await shared.heads(idOrPrefix, caller.admin ? undefined : caller.name, MIN_PREFIX);
    if (heads.length > 1) throw fail.invalid(`"${idOrPrefix}" is the start of several session ids; type more of the id.`);
    const head = heads[0];
    if (!head) {
      const gone = this.sessions.get(idOrPrefix);
      if (gone && !gone.running && (caller.admin || gone.owner === caller.name)) this.drop(gone);
      throw fail.notFound(`There is no session "${idOrPrefix}"; list sessions with \`nanollm sessions\` or create one.`);
    }
    const mine = this.sessions.get(head.id);
    if (mine && (mine.revision === head.revision || mine.running)) return mine;
    const stored = await shared.load(head.id);
    if (!stored) throw fail.notFound(`Session ${head.id} was just deleted on another daemon; create a new one.`);
    return (await this.fromStored(stored, true))!;
  }

  /**
   * The sessions `caller` may see, oldest first: with a shared journal, every one it holds whose
   * model is loaded here (those this daemon holds no copy of are described, not kept).
   */
  async listStored(caller: Caller): Promise<Session[]> {
    if (!this.shared) return this.list(caller);
    const out: Session[] = [];
    for (const stored of await this.shared.list(caller.admin ? undefined : caller.name)) {
      try {
        const session = await this.fromStored(stored, false);
        if (session) out.push(session);
      } catch (err) {
        this.log(`session ${stored.record.id} left out of the list: ${(err as Error).message}`);
      }
    }
    return out;
  }

  /** How many sessions `caller` may see (in the shared journal when there is one). */
  async count(caller: Caller): Promise<number> {
    return this.shared ? this.shared.count(caller.admin ? undefined : caller.name) : this.list(caller).length;
  }

  /**
   * This daemon's copy of a journaled session, brought up to `stored`. Listing (`load` false) keeps
   * no new copy and loads no model: undefined when the model is not loaded here.
   */
  private async fromStored(stored: Stored, load: boolean): Promise<Session | undefined> {
    const { record, revision } = stored;
    const host = this.sessions.has(record.id) ? undefined : await this.hostFor(record.modelFile, load);
    // Looked up after the wait: a concurrent request may have brought the session in meanwhile.
    const mine = this.sessions.get(record.id);
    if (mine) {
      // Never back to an older read (a list that started before this daemon's save); a session deleted and made again is new.
      if (!mine.running && (mine.revision < revision || mine.createdAt !== record.createdAt)) refresh(mine, stored);
      return mine;
    }
    if (!host) return undefined;
    try {
      return load ? this.restore(record, host, revision) : copyOf(record, host, revision);
    } catch (err) {
      if (err instanceof Error && !("code" in err)) throw fail.internal(`Session ${record.id} in the session store cannot be used (${err.message}); delete it.`);
      throw err;
    }
  }

  /** Takes the session's lease, then reads the session again if another daemon wrote it since this copy. */
  private async holdShared(session: Session, signal?: AbortSignal): Promise<Held> {
    const shared = this.shared!;
    const held = await shared.lease(session.id, signal);
    try {
      const [head] = await shared.heads(session.id, undefined, Infinity);
      const stored = head && head.revision !== session.revision ? await shared.load(session.id) : undefined;
      if (!head || (head.revision !== session.revision && !stored)) {
        this.drop(session);
        throw fail.notFound(`Session ${session.id} was deleted on another daemon; create a new one.`);
      }
      if (stored) refresh(session, stored);
      return held;
    } catch (err) {
      await held.release();
      throw err;
    }
  }

  /** Forgets this daemon's copy of a session deleted elsewhere, and its cache. */
  private drop(session: Session): void {
    this.sessions.delete(session.id);
    void session.cacheSync.then(() => session.host.pool.forget(session.id)).catch(() => undefined);
  }

  /**
   * The session, when `caller` may see it, by its id or by the start of its id when only one of
   * the caller's sessions starts so; another identity's session is reported as absent.
   */
  get(idOrPrefix: string, caller: Caller): Session {
    const visible = (s: Session) => caller.admin || s.owner === caller.name;
    const exact = this.sessions.get(idOrPrefix);
    if (exact && visible(exact)) return exact;
    const matches = idOrPrefix.length >= MIN_PREFIX ? [...this.sessions.values()].filter((s) => visible(s) && s.id.startsWith(idOrPrefix)) : [];
    if (matches.length > 1) throw fail.invalid(`"${idOrPrefix}" is the start of ${matches.length} session ids; type more of the id.`);
    if (!matches[0]) throw fail.notFound(`There is no session "${idOrPrefix}"; list sessions with \`nanollm sessions\` or create one.`);
    return matches[0];
  }

  /** Every session, for an internal reader (metrics); callers use list. */
  all(): Session[] {
    return [...this.sessions.values()];
  }

  /** The sessions `caller` may see, oldest first. */
  list(caller: Caller): Session[] {
    return [...this.sessions.values()].filter((s) => caller.admin || s.owner === caller.name).sort((a, b) => a.createdAt - b.createdAt);
  }

  reset(id: string, caller: Caller): Promise<Session> {
    return this.exclusive(id, caller, (session) => this.resetHeld(session));
  }

  private async resetHeld(session: Session): Promise<Session> {
    const id = session.id;
    await session.cacheSync;
    const before = { history: session.history, windowStart: session.windowStart, updatedAt: session.updatedAt };
    session.history = [];
    session.windowStart = 0;
    session.updatedAt = Date.now();
    await session.host.pool.forget(id);
    await commit(session, before);
    return session;
  }

  delete(id: string, caller: Caller): Promise<void> {
    return this.exclusive(id, caller, async (session) => {
      await session.cacheSync;
      // The journal first: a session it still holds would come back.
      await this.journal?.remove(session.id);
      this.sessions.delete(session.id);
      session.feed.close(fail.notFound(`Session ${session.id} was deleted; there is nothing more to watch.`));
      await session.host.pool.forget(session.id);
    });
  }

  /** Changes the system prompt, template or defaults; the next turn reuses the cache up to the first changed token. */
  update(id: string, caller: Caller, change: SessionChange): Promise<Session> {
    return this.exclusive(id, caller, (session) => this.updateHeld(session, change));
  }

  private async updateHeld(session: Session, change: SessionChange): Promise<Session> {
    checkText("The system prompt", change.systemPrompt);
    const defaults = { ...session.defaults, ...definedOnly(change.defaults ?? {}) };
    checkParams(defaults);
    const template = change.templateJson ? this.templates.parse(change.templateJson) : change.template ? this.templates.resolve(change.template) : session.template;
    await session.cacheSync;
    // A long new system prompt is tokenized a piece at a time before anything changes.
    await session.text.prepare(session.systemText({ template, systemPrompt: change.systemPrompt, functions: change.functions }), true);
    const before = { template: session.template, systemPrompt: session.systemPrompt, functions: session.functions, templateReason: session.templateReason, defaults: session.defaults, updatedAt: session.updatedAt };
    session.template = template;
    if (change.systemPrompt !== undefined) session.systemPrompt = change.systemPrompt;
    if (change.functions) session.functions = change.functions;
    const used = session.contextUsed();
    if (used >= session.contextSize) {
      Object.assign(session, before);
      throw fail.invalid(`With that change the conversation is ${used} tokens, more than the context of ${session.contextSize}; use a shorter system prompt or reset the session.`);
    }
    if (change.template || change.templateJson) session.templateReason = "requested";
    session.defaults = defaults;
    session.updatedAt = Date.now();
    await commit(session, before);
    return session;
  }

  /** Keeps the first `keep` messages, or with "last exchange" those before the last user message (/undo). */
  truncate(id: string, caller: Caller, keep: number | "last exchange"): Promise<Session> {
    return this.exclusive(id, caller, (session) => this.truncateHeld(session, keep));
  }

  private async truncateHeld(session: Session, keep: number | "last exchange"): Promise<Session> {
    const id = session.id;
    if (keep === "last exchange") {
      keep = session.history.findLastIndex((m) => m.role === "user");
      if (keep < 0) throw fail.precondition(`Session ${session.id} has no user message yet; there is no exchange to drop.`);
    }
    if (keep > session.history.length) throw fail.invalid(`Session ${id} has only ${session.history.length} messages; keep at most that many.`);
    await session.cacheSync;
    const before = { history: session.history, windowStart: session.windowStart, updatedAt: session.updatedAt };
    session.history = session.history.slice(0, keep);
    session.windowStart = Math.min(session.windowStart, keep);
    session.updatedAt = Date.now();
    await commit(session, before);
    return session;
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Runs a change of an idle session as its one writer (holding its lease in a shared journal). */
  private async exclusive<T>(id: string, caller: Caller, change: (session: Session) => Promise<T>): Promise<T> {
    const session = await this.find(id, caller);
    if (session.running) throw fail.precondition(`Session ${id} has a turn running; cancel it first.`);
    const held = await session.hold();
    try {
      return await change(session);
    } finally {
      await held.release();
    }
  }
}

type SessionChange = { systemPrompt?: string; template?: string; templateJson?: string; defaults?: GenerationParams; functions?: FunctionSet };

/** Journals the session; when that fails, puts back `before` so memory matches the disk and the client's error. */
async function commit(session: Session, before: Partial<Session>): Promise<void> {
  try {
    await session.persist();
  } catch (err) {
    Object.assign(session, before);
    throw err;
  }
}

