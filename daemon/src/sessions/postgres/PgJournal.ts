import { randomUUID } from "node:crypto";
import { fail, NanoError } from "@nanollm/shared";
import { ImageStore } from "../ImageStore.js";
import type { Held, ImageBytes, SharedJournal, Stored, StoredHead } from "../Journal.js";
import { checkRecord, type SessionRecord } from "../SessionJournal.js";
import { Database } from "./Database.js";
import { Leases } from "./Leases.js";
import { migrate } from "./migrations.js";

export interface PgOptions {
  /** postgres://user[:password]@host:port/db */
  url: string;
  /** This daemon's name in lease rows. */
  holder: string;
  leaseTtlMs: number;
  /** How long a statement is retried while the database is unreachable. */
  retryMs: number;
  log: (line: string) => void;
}

/**
 * Sessions in PostgreSQL, shared by every daemon that names the same database: one row per
 * session (its record as JSON, its owner and a revision counted up by each save), images by hash,
 * and per-session leases (see Leases).
 */
export class PgJournal implements SharedJournal {
  readonly images: ImageBytes;

  private constructor(
    private readonly db: Database,
    readonly leases: Leases,
  ) {
    this.images = new PgImages(db);
  }

  /** Connects (retrying up to the bound), migrates the schema, and returns the journal. */
  static async open(opts: PgOptions): Promise<PgJournal> {
    if (!/^postgres(ql)?:\/\//.test(opts.url)) throw fail.invalid(`The session store "${opts.url.slice(0, 80)}" is not a postgres:// URL; use --store postgres://USER@HOST:PORT/DB.`);
    const db = new Database(opts.url, opts.retryMs, opts.log);
    db.advice = "start PostgreSQL or fix the URL given to --store";
    try {
      await migrate(db, opts.log);
    } catch (err) {
      await db.close();
      // A wrong password or database name: the server's own words.
      if (err instanceof Error && !(err instanceof NanoError)) throw fail.unavailable(`The session store ${db.where} refused the daemon (${err.message.split("\n")[0]}); fix the URL given to --store.`);
      throw err;
    } finally {
      db.advice = "nothing was saved, retry when the database is back";
    }
    return new PgJournal(db, new Leases(db, opts.holder, opts.leaseTtlMs, opts.log));
  }

  get where(): string {
    return this.db.where;
  }

  async save(record: SessionRecord, revision: number): Promise<number> {
    const saveId = randomUUID();
    const json = JSON.stringify(record);
    if (revision === 0) {
      const [row] = await this.db.query<{ save_id: string }>(
        `INSERT INTO nanollm_sessions (id, owner, model_file, revision, save_id, record) VALUES ($1, $2, $3, 1, $4, $5)
         ON CONFLICT (id) DO UPDATE SET id = excluded.id WHERE nanollm_sessions.save_id = excluded.save_id
         RETURNING save_id`,
        [record.id, record.owner ?? "", record.modelFile, saveId, json],
      );
      if (!row) throw fail.precondition(`Session ${record.id} exists already; use it or pick another id.`);
      return 1;
    }
    // Only over the revision this copy was read at; a retry after a lost reply finds its own save.
    const [row] = await this.db.query<{ revision: string }>(
      `UPDATE nanollm_sessions SET record = $3, revision = $2 + 1, save_id = $4, owner = $5, updated_at = now()
       WHERE id = $1 AND (revision = $2 OR save_id = $4) RETURNING revision`,
      [record.id, revision, json, saveId, record.owner ?? ""],
    );
    if (row) return Number(row.revision);
    const exists = await this.db.query("SELECT 1 FROM nanollm_sessions WHERE id = $1", [record.id]);
    if (exists.length === 0) throw fail.notFound(`Session ${record.id} was deleted on another daemon; the change was not saved.`);
    throw fail.precondition(`Session ${record.id} was changed on another daemon meanwhile; the change was not saved, send it again.`);
  }

  async remove(id: string): Promise<void> {
    await this.db.query("DELETE FROM nanollm_sessions WHERE id = $1", [id]);
  }

  async load(id: string): Promise<Stored | undefined> {
    const [row] = await this.db.query<{ record: unknown; revision: string }>("SELECT record, revision FROM nanollm_sessions WHERE id = $1", [id]);
    return row && stored(row);
  }

  async heads(idOrPrefix: string, owner: string | undefined, minPrefix: number): Promise<StoredHead[]> {
    const rows = await this.db.query<{ id: string; owner: string; revision: string }>(
      `SELECT id, owner, revision FROM nanollm_sessions
       WHERE (id = $1 OR ($2 AND starts_with(id, $1))) AND ($3::text IS NULL OR owner = $3)
       ORDER BY id = $1 DESC LIMIT 2`,
      [idOrPrefix, idOrPrefix.length >= minPrefix, owner ?? null],
    );
    const heads = rows.map((r) => ({ id: r.id, owner: r.owner, revision: Number(r.revision) }));
    return heads[0]?.id === idOrPrefix ? heads.slice(0, 1) : heads;
  }

  async list(owner: string | undefined): Promise<Stored[]> {
    const rows = await this.db.query<{ record: unknown; revision: string }>("SELECT record, revision FROM nanollm_sessions WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id", [owner ?? null]);
    return rows.map(stored);
  }

  async count(owner: string | undefined): Promise<number> {
    const [row] = await this.db.query<{ n: string }>("SELECT count(*) AS n FROM nanollm_sessions WHERE $1::text IS NULL OR owner = $1", [owner ?? null]);
    return Number(row?.n ?? 0);
  }

  lease(id: string, signal?: AbortSignal): Promise<Held> {
    return this.leases.take(id, signal);
  }

  /** Releases this daemon's leases and closes the connections. */
  async close(): Promise<void> {
    try {
      await this.leases.releaseAll();
    } finally {
      await this.db.close();
    }
  }
}

function stored(row: { record: unknown; revision: string }): Stored {
  return { record: checkRecord(row.record), revision: Number(row.revision) };
}

/** Image bytes in the database, once per hash. */
class PgImages implements ImageBytes {
  /** Hashes known to be stored, so a session's images are not sent again each turn. */
  private readonly known = new Set<string>();

  constructor(private readonly db: Database) {}

  async put(bytes: Uint8Array, sha = ImageStore.hash(bytes)): Promise<string> {
    if (this.known.has(sha)) return sha;
    await this.db.query("INSERT INTO nanollm_images (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING", [sha, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)]);
    this.known.add(sha);
    return sha;
  }

  async get(sha: string): Promise<Uint8Array> {
    const [row] = /^[0-9a-f]{64}$/.test(sha) ? await this.db.query<{ bytes: Buffer }>("SELECT bytes FROM nanollm_images WHERE sha256 = $1", [sha]) : [];
    if (!row) throw fail.notFound(`Image ${sha.slice(0, 12)} is not in the session store; send it again.`);
    if (ImageStore.hash(row.bytes) !== sha) throw fail.notFound(`Image ${sha.slice(0, 12)} in the session store does not match its hash; send it again.`);
    this.known.add(sha);
    return new Uint8Array(row.bytes);
  }
}
