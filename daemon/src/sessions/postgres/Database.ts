import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { fail, type NanoError } from "@nanollm/shared";

export type Query = <R extends object>(sql: string, params?: unknown[]) => Promise<R[]>;

/** SQLSTATEs that mean "the server went away or is not ready", not "the statement is wrong". */
const CONNECTION_STATES = /^(08|57P0[123]|53300)/;

/**
 * A PostgreSQL connection pool that rides out a database restart: a statement that fails for want
 * of a connection is retried (backing off) until `retryMs` has passed, then it is UNAVAILABLE with
 * one sentence. Statements given to it must be safe to run twice (a lost reply to a commit).
 */
export class Database {
  /** The URL without its password, for messages. */
  readonly where: string;
  private readonly pool: pg.Pool;
  private downSince: number | undefined;
  /** What an UNAVAILABLE tells the user to do. */
  advice = "nothing was saved, retry when the database is back";

  constructor(
    url: string,
    private readonly retryMs: number,
    private readonly log: (line: string) => void,
  ) {
    this.where = describe(url);
    this.pool = new pg.Pool({ connectionString: url, max: 8, connectionTimeoutMillis: Math.min(3000, retryMs), idleTimeoutMillis: 30_000, keepAlive: true });
    // An idle connection the server closed (a restart) errors here; the next query reconnects.
    this.pool.on("error", (err) => this.wentDown(err));
  }

  query: Query = (sql, params = []) => this.retrying(async () => (await this.pool.query(sql, params)).rows);

  /** Runs `fn` in one transaction (retried whole after a lost connection). */
  transaction<T>(fn: (q: Query) => Promise<T>): Promise<T> {
    return this.retrying(async () => {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn(async (sql, params = []) => (await client.query(sql, params)).rows);
        await client.query("COMMIT");
        return result;
      } catch (err) {
        broken = err as Error;
        await client.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        client.release(broken !== undefined && isConnectionError(broken) ? broken : undefined);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async retrying<T>(run: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.retryMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await run();
        if (this.downSince !== undefined) {
          this.log(`session store ${this.where} is reachable again after ${((Date.now() - this.downSince) / 1000).toFixed(1)} s`);
          this.downSince = undefined;
        }
        return result;
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        this.wentDown(err as Error);
        const left = deadline - Date.now();
        if (left <= 0) throw this.unreachable(err as Error);
        await sleep(Math.min(left, 1000, 50 * 2 ** attempt));
      }
    }
  }

  private wentDown(err: Error): void {
    if (this.downSince !== undefined) return;
    this.downSince = Date.now();
    this.log(`session store ${this.where} is unreachable (${err.message.split("\n")[0]}); retrying each request for up to ${this.retryMs / 1000} s`);
  }

  private unreachable(err: Error): NanoError {
    return fail.unavailable(`The session store (PostgreSQL at ${this.where}) is unreachable (${why(err)}) and did not come back within ${this.retryMs / 1000} s; ${this.advice}.`);
  }
}

/** Socket errors of a server that is down, restarting or out of reach. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);

function isConnectionError(err: unknown): boolean {
  if (err instanceof pg.DatabaseError) return CONNECTION_STATES.test(err.code ?? "");
  if (!(err instanceof Error)) return false;
  // pg's own words for a connection that broke or never came.
  return NETWORK_CODES.has((err as { code?: string }).code ?? "") || /Connection terminated|timeout exceeded when trying to connect|connection error|not queryable/i.test(err.message);
}

/** Socket error codes in words (the client reads "connect" in an UNAVAILABLE message as its own link failing). */
const WORDS: Record<string, string> = { ECONNREFUSED: "refused", ECONNRESET: "reset", EPIPE: "reset", ETIMEDOUT: "timed out", EHOSTUNREACH: "no route", ENETUNREACH: "no route", EAI_AGAIN: "name lookup failed" };

function why(err: Error): string {
  const code = (err as { code?: string }).code ?? "";
  if (err instanceof pg.DatabaseError) return `SQLSTATE ${code}`;
  return WORDS[code] ?? (/timeout/i.test(err.message) ? "timed out" : "dropped");
}

/** postgres://user@host:port/db, without the password. */
export function describe(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return u.toString();
  } catch {
    return "(an unparseable URL)";
  }
}
