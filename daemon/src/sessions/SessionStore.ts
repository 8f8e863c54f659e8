import { randomUUID } from "node:crypto";
import { fail, type GenerationParams } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { TemplateRegistry } from "../templates/TemplateRegistry.js";
import { chooseTemplate } from "../templates/chooseTemplate.js";
import { checkParams } from "./params.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import { checkText } from "./limits.js";
import { ImageStore } from "./ImageStore.js";
import { Session, type Caller, type HistoryMessage, type OverflowPolicy } from "./Session.js";
import type { SessionJournal, SessionRecord } from "./SessionJournal.js";

const MAX_HISTORY = 100_000;
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
}

/** Owns every session: creation, lookup, reset and deletion. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  /** Every session's images, by hash (under the data folder when there is one). */
  readonly images: ImageStore;

  constructor(
    readonly templates: TemplateRegistry,
    private readonly journal: SessionJournal | undefined,
    private readonly maxSessions = 1024,
    dataDir?: string,
  ) {
    this.images = new ImageStore(dataDir);
  }

  async create(opts: CreateOptions): Promise<Session> {
    if (this.sessions.size >= this.maxSessions) {
      throw fail.exhausted(`The daemon already keeps ${this.sessions.size} sessions, its limit; delete old ones with \`nanollm sessions prune --older-than 7d\` (or \`sessions rm ID\`), or raise NANOLLM_MAX_SESSIONS.`);
    }
    checkParams(opts.defaults);
    checkText("The system prompt", opts.systemPrompt);
    if (opts.history.length > MAX_HISTORY) throw fail.invalid(`The given history has ${opts.history.length} messages, more than ${MAX_HISTORY}; send a shorter one.`);
    opts.history.forEach((m, i) => checkText(`History message ${i}`, m.text));
    const { template, reason } = opts.templateJson
      ? { template: this.templates.parse(opts.templateJson), reason: "requested" }
      : opts.template
        ? { template: this.templates.resolve(opts.template), reason: "requested" }
        : chooseTemplate(opts.host.facts, this.templates);
    const session = new Session(randomUUID(), opts.host, template, reason, opts.systemPrompt ?? template.system_prompt ?? "", opts.defaults ?? {});
    for (const msg of opts.history) {
      const bad = msg.tokens.find((id) => !opts.host.isValidToken(id));
      if (bad !== undefined) throw fail.invalid(`History token id ${bad} is not in the model's vocabulary of ${opts.host.vocabSize}; send bot messages as text only.`);
      session.history.push({ ...msg, tokens: msg.tokens.length ? msg.tokens : opts.host.tokenizeText(msg.text) });
    }
    session.overflow = opts.overflow ?? "wrap";
    session.owner = opts.owner;
    // Set before the size check: the functions' docs are part of the rendered prompt.
    session.functions = opts.functions ?? FunctionSet.none;
    const used = session.contextUsed();
    if (used >= session.contextSize) throw fail.invalid(`The given history is ${used} tokens, more than the context of ${session.contextSize}; send a shorter history.`);
    this.track(session);
    await session.persist();
    return session;
  }

  /** Brings back a journaled session; its KV cache is rebuilt by its next turn. */
  restore(record: SessionRecord, host: ModelHost): Session {
    const session = new Session(record.id, host, record.template, record.templateReason, record.systemPrompt, record.defaults);
    Object.assign(session, { owner: record.owner ?? "local", history: record.history, overflow: record.overflow, windowStart: record.windowStart, createdAt: record.createdAt, updatedAt: record.updatedAt });
    session.functions = FunctionSet.build(record.builtinFunctions ?? [], record.clientFunctions ?? []);
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
    session.history = [];
    session.windowStart = 0;
    session.updatedAt = Date.now();
    await session.host.pool.forget(id);
    await session.persist();
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
    const before = { template: session.template, systemPrompt: session.systemPrompt, functions: session.functions };
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
    await session.persist();
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
    session.history = session.history.slice(0, keep);
    session.windowStart = Math.min(session.windowStart, keep);
    session.updatedAt = Date.now();
    await session.persist();
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
