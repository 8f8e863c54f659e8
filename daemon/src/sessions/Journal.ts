import type { SessionRecord } from "./SessionJournal.js";

/**
 * Where sessions are kept between turns and restarts: a folder of files on one machine
 * (SessionJournal, the default), or a database several daemons share (PgJournal).
 */
export interface Journal {
  /** Where the sessions are, for log lines and messages. */
  readonly where: string;
  /**
   * Saves the record. `revision` is the one the session was read at (0: a new session); resolves
   * to its new revision. A shared journal refuses a save over a revision another daemon wrote.
   */
  save(record: SessionRecord, revision: number): Promise<number>;
  remove(id: string): Promise<void>;
  /**
   * Whether a local journal holds a session this daemon did not load (another model's): a new
   * session must not take its id. (A shared journal refuses such a save itself.)
   */
  holds?(id: string): boolean;
  /** Ends what the journal holds open (connections, leases). */
  close(): Promise<void>;
}

/** Image bytes by their SHA-256, stored once. */
export interface ImageBytes {
  /** Stores `bytes` under their hash (`sha` when the caller hashed them already). */
  put(bytes: Uint8Array, sha?: string): Promise<string>;
  get(sha: string): Promise<Uint8Array>;
}

/** A stored session and the revision it is at. */
export interface Stored {
  record: SessionRecord;
  revision: number;
}

/** What finding a session by id or id prefix sees without reading its history. */
export interface StoredHead {
  id: string;
  owner: string;
  revision: number;
}

/** A session's lease: while held, no other daemon generates in it. */
export interface Held {
  /** Aborted when the lease was lost (another daemon took the session over). */
  readonly lost?: AbortSignal;
  release(): Promise<void>;
}

/**
 * A journal other daemons write too: the daemon reads a session from it when a request names
 * one it does not hold (or holds at an older revision), and takes the session's lease before
 * changing it. `owner` undefined means every owner's sessions (an admin).
 */
export interface SharedJournal extends Journal {
  readonly images: ImageBytes;
  load(id: string): Promise<Stored | undefined>;
  /** The session `idOrPrefix` names exactly, else up to two whose ids start with it (at least `minPrefix` characters). */
  heads(idOrPrefix: string, owner: string | undefined, minPrefix: number): Promise<StoredHead[]>;
  list(owner: string | undefined): Promise<Stored[]>;
  count(owner: string | undefined): Promise<number>;
  /** Takes the session's lease, waiting a bounded time for another daemon's turn to end. */
  lease(id: string, signal?: AbortSignal): Promise<Held>;
}

export function isShared(journal: Journal | undefined): journal is SharedJournal {
  return journal !== undefined && "lease" in journal;
}

/** The lease of a session no other daemon can write. */
export const UNSHARED: Held = { release: async () => {} };
