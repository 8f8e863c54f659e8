import { fail } from "@nanollm/shared";
import type { Database } from "./Database.js";

/** The schema's steps, in order; a released step is never edited, a change is a new step. */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: "sessions, images and leases",
    sql: `
      CREATE TABLE nanollm_sessions (
        id text PRIMARY KEY,
        owner text NOT NULL,
        model_file text NOT NULL,
        -- Counts saves: a daemon whose copy is at an older revision reloads it before a turn.
        revision bigint NOT NULL,
        -- The save that wrote this revision, so a save retried after a lost reply is recognised.
        save_id uuid NOT NULL,
        -- json, not jsonb: jsonb refuses a NUL character, which a message may hold.
        record json NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX nanollm_sessions_owner ON nanollm_sessions (owner, created_at);
      CREATE TABLE nanollm_images (
        sha256 text PRIMARY KEY,
        bytes bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE nanollm_leases (
        session_id text PRIMARY KEY,
        holder text NOT NULL,
        expires_at timestamptz NOT NULL
      );`,
  },
];

/** Any constant: daemons starting together apply the steps one at a time under it. */
const LOCK = 7433_0017;

/**
 * Brings the schema up to date: the steps not yet in nanollm_migrations run, each recorded, all
 * in one transaction under an advisory lock (so daemons starting at once apply each step once).
 * A schema newer than this daemon knows is refused: an older nanollm must not write it.
 */
export async function migrate(db: Database, log: (line: string) => void): Promise<number> {
  const latest = MIGRATIONS.at(-1)!.version;
  const applied = await db.transaction(async (q) => {
    await q("SELECT pg_advisory_xact_lock($1)", [LOCK]);
    await q("CREATE TABLE IF NOT EXISTS nanollm_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    const [row] = await q<{ v: number | null }>("SELECT max(version) AS v FROM nanollm_migrations");
    const current = row?.v ?? 0;
    if (current > latest) {
      throw fail.precondition(`The session store ${db.where} has schema version ${current}, newer than this nanollm's ${latest}; upgrade nanollm on this machine.`);
    }
    const steps = MIGRATIONS.filter((m) => m.version > current);
    for (const step of steps) {
      await q(step.sql);
      await q("INSERT INTO nanollm_migrations (version, name) VALUES ($1, $2)", [step.version, step.name]);
    }
    return steps;
  });
  for (const step of applied) log(`session store ${db.where}: applied schema migration ${step.version} (${step.name})`);
  return latest;
}
