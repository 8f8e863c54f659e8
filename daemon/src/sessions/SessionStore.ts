import { randomUUID } from "node:crypto";
import { fail, type GenerationParams } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { TemplateRegistry } from "../templates/TemplateRegistry.js";
import { chooseTemplate } from "../templates/chooseTemplate.js";
import { checkParams } from "./params.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import { validateTemplate } from "../templates/ChatTemplate.js";
import { checkText, MAX_HISTORY_MESSAGES } from "./limits.js";
import { ImageStore } from "./ImageStore.js";
import type { StoredImage } from "../engine/Images.js";
import { LOCAL_OWNER, Session, type Caller, type HistoryMessage, type OverflowPolicy } from "./Session.js";
import type { SessionJournal, SessionRecord } from "./SessionJournal.js";

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

/** Owns every session: creation, lookup, reset and deletion. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** Every session's images, by hash (under the data folder when there is one). */
  readonly images: ImageStore;

  constructor(
    readonly templates: TemplateRegistry,
    readonly journal: SessionJournal | undefined,
    private readonly maxSessions = 1024,
    dataDir?: string,
    /** Sessions one owner may keep (NANOLLM_MAX_SESSIONS_PER_OWNER); a function so identities can vary it. */
    private readonly quota: (owner: string) => number = () => maxSessions,
  ) {
    this.images = new ImageStore(dataDir);
  }

  async create(opts: CreateOptions): Promise<Session> {
    const owner = opts.owner;
    this.checkQuota(owner);
    checkParams(opts.defaults);
    checkText("The system prompt", opts.systemPrompt);
    if (opts.history.length > MAX_HISTORY_MESSAGES) throw fail.invalid(`The given history has ${opts.history.length} messages, more than the limit of ${MAX_HISTORY_MESSAGES}; send a shorter one.`);
    opts.history.forEach((m, i) => checkText(`History message ${i}`, m.text));
    const { template, reason } = opts.templateJson
      ? { template: this.templates.parse(opts.templateJson), reason: "requested" }
      : opts.template
        ? { template: this.templates.resolve(opts.template), reason: "requested" }
        : chooseTemplate(opts.host.facts, this.templates);
    if (opts.id !== undefined && this.sessions.has(opts.id)) throw fail.precondition(`Session ${opts.id} exists already; use it or pick another id.`);
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
    this.checkQuota(owner);
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

  /** Refuses a new session past the daemon's limit or the owner's quota. */
  private checkQuota(owner: string): void {
    if (this.sessions.size >= this.maxSessions) {
      throw fail.exhausted(`The daemon already keeps ${this.sessions.size} sessions, its limit (NANOLLM_MAX_SESSIONS); delete old ones with \`nanollm sessions prune --older-than 7d\` (or \`sessions rm ID\`), or raise NANOLLM_MAX_SESSIONS.`);
    }
    const quota = this.quota(owner);
    let owned = 0;
    for (const s of this.sessions.values()) if (s.owner === owner) owned++;
    if (owned >= quota) {
      throw fail.exhausted(`You already keep ${owned} sessions, your quota (NANOLLM_MAX_SESSIONS_PER_OWNER); delete some with \`nanollm sessions rm ID\`.`);
    }
  }

  /**
   * Brings back a journaled session; its KV cache is rebuilt by its next turn. The record is
   * checked as a request would be (settings, template, functions, token ids); a bad one throws and
   * is quarantined by the caller.
   */
  restore(record: SessionRecord, host: ModelHost): Session {
    if (this.sessions.has(record.id)) throw new Error(`session ${record.id} is already loaded`);
    checkParams(record.defaults);
    checkText("The system prompt", record.systemPrompt);
    const template = validateTemplate(record.template, `of session ${record.id}`);
    record.history.forEach((m, i) => {
      checkText(`History message ${i}`, m.text);
      const bad = m.tokens.find((id) => !host.isValidToken(id));
      if (bad !== undefined) throw new Error(`history message ${i} holds token id ${bad}, outside the vocabulary of ${host.vocabSize}`);
      checkStoredImages(m.images, i, host);
    });
    // Names were checked when declared; a pinned HTTP session's tools may have any OpenAI-valid name.
    const functions = FunctionSet.build(record.builtinFunctions ?? [], record.clientFunctions ?? [], "tools");
    const session = new Session(record.id, host, template, record.templateReason, record.systemPrompt, record.defaults);
    Object.assign(session, { history: record.history, overflow: record.overflow, windowStart: record.windowStart, createdAt: record.createdAt, updatedAt: record.updatedAt });
    session.owner = record.owner ?? LOCAL_OWNER;
    session.functions = functions;
    this.track(session);
    return session;
  }

  private track(session: Session): void {
    session.imageStore = this.images;
    const journal = this.journal;
    if (journal) session.persist = () => journal.save(toRecord(session));
    this.sessions.set(session.id, session);
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

  async reset(id: string, caller: Caller): Promise<Session> {
    const session = this.idle(id, caller);
    await session.cacheSync;
    const before = { history: session.history, windowStart: session.windowStart, updatedAt: session.updatedAt };
    session.history = [];
    session.windowStart = 0;
    session.updatedAt = Date.now();
    await session.host.pool.forget(id);
    await commit(session, before);
    return session;
  }

  async delete(id: string, caller: Caller): Promise<void> {
    const session = this.idle(id, caller);
    await session.cacheSync;
    this.sessions.delete(id);
    await session.host.pool.forget(id);
    await this.journal?.remove(id);
  }

  /** Changes the system prompt, template or defaults; the next turn reuses the cache up to the first changed token. */
  async update(id: string, caller: Caller, change: { systemPrompt?: string; template?: string; templateJson?: string; defaults?: GenerationParams; functions?: FunctionSet }): Promise<Session> {
    const session = this.idle(id, caller);
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
  async truncate(id: string, caller: Caller, keep: number | "last exchange"): Promise<Session> {
    const session = this.idle(id, caller);
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

  private idle(id: string, caller: Caller): Session {
    const session = this.get(id, caller);
    if (session.running) throw fail.precondition(`Session ${id} has a turn running; cancel it first.`);
    return session;
  }
}

/** A journaled message's images: a hash as ImageStore names files, pieces the model can hold. */
function checkStoredImages(images: unknown, i: number, host: ModelHost): void {
  if (images === undefined) return;
  const ok =
    Array.isArray(images) &&
    images.every(
      (im: Partial<StoredImage>) =>
        typeof im?.sha256 === "string" &&
        /^[0-9a-f]{64}$/.test(im.sha256) &&
        Array.isArray(im.pieces) &&
        im.pieces.every((p) => (p?.kind === "text" ? Array.isArray(p.tokens) && p.tokens.every((id) => host.isValidToken(id)) : p?.kind === "image" && Number.isInteger(p.nPos) && p.nPos >= 0 && p.nPos <= host.facts.contextSize)),
    );
  if (!ok) throw new Error(`history message ${i} holds a malformed image record`);
}

/** Journals the session; when that fails, puts back `before` so memory matches the disk and the client's error. */
async function commit(session: Session, before: Partial<Session>): Promise<void> {
  try {
    await session.persist();
  } catch (err) {
    Object.assign(session, before);
    throw err;
  }
}

function toRecord(s: Session): SessionRecord {
  return {
    version: 1,
    id: s.id,
    owner: s.owner,
    modelFile: s.host.facts.file,
    template: s.template,
    templateReason: s.templateReason,
    systemPrompt: s.systemPrompt,
    defaults: s.defaults,
    overflow: s.overflow,
    windowStart: s.windowStart,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    history: s.history,
    builtinFunctions: s.functions.builtinNames(),
    clientFunctions: s.functions.clientDecls(),
  };
}
