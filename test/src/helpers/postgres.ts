// A private PostgreSQL cluster for tests: Debian's packages (installed once if missing), a cluster
// in a temporary folder on a free 127.0.0.1 port, stopped and removed when the test process ends.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "./ports.js";

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres, the cluster's maintenance database. */
  url: string;
  port: number;
  /** The cluster's folder (its log is `log` in it). */
  dir: string;
  /** Creates a fresh, empty database and returns its URL (a test per database keeps them apart). */
  database(name?: string): Promise<string>;
  /** Stops the server (`pg_ctl stop -m fast`): connections break, new ones are refused. */
  stop(): void;
  /** Starts it again on the same port, keeping the data. */
  start(): void;
  /** Runs one statement on `url` and returns its rows. */
  query<R extends object = Record<string, unknown>>(url: string, sql: string, params?: unknown[]): Promise<R[]>;
  /** Stops the server and removes its folder (also done when the process exits). */
  remove(): void;
}

let started: Promise<TestPostgres | string> | undefined;

/**
 * The test process's cluster, started on first use; a string saying why when PostgreSQL cannot be
 * installed or started here (print it and skip). Each test file runs in its own process, so each
 * file gets its own cluster (a second or two to start); the packages are installed once per machine.
 */
export function testPostgres(): Promise<TestPostgres | string> {
  started ??= start().catch((err: Error) => `PostgreSQL could not be started (${err.message.trim().split("\n").slice(-3).join(" ")})`);
  return started;
}

/** For `describe(..., { skip })`: false with a cluster, else the reason, printed once. */
export async function postgresOrSkip(): Promise<{ pg: TestPostgres | undefined; skip: string | false }> {
  const pgOrWhy = await testPostgres();
  if (typeof pgOrWhy === "string") {
    process.stdout.write(`# skipped: ${pgOrWhy}\n`);
    return { pg: undefined, skip: pgOrWhy };
  }
  return { pg: pgOrWhy, skip: false };
}

async function start(): Promise<TestPostgres> {
  const bin = binDir() ?? install();
  removeOrphans(bin);
  const root = process.getuid?.() === 0;
  // postgres refuses to run as root: as root, the cluster belongs to the postgres user.
  const as = (args: string[]) => (root ? ["runuser", ["-u", "postgres", "--", ...args]] : [args[0]!, args.slice(1)]) as [string, string[]];
  const run = (args: string[]) => {
    const [cmd, rest] = as(args);
    execFileSync(cmd, rest, { stdio: ["ignore", "pipe", "pipe"], cwd: "/" });
  };
  const dir = fs.mkdtempSync(path.join(root ? "/tmp" : os.tmpdir(), "nanollm-pg-"));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, "data");
  fs.mkdirSync(data);
  if (root) execFileSync("chown", ["-R", "postgres:postgres", dir]);
  // Whose cluster it is: a test process killed before its exit handler leaves it to removeOrphans().
  fs.writeFileSync(path.join(dir, "owner"), String(process.pid));
  const port = await freePort();
  try {
    run([path.join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message}`);
  }
  // Tests only: durability across an OS crash is not what they check, speed is.
  const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  const ctl = (...args: string[]) => run([path.join(bin, "pg_ctl"), "-D", data, "-l", path.join(dir, "log"), "-w", "-t", "30", ...args]);
  const startServer = () => ctl("-o", opts, "start");
  const stopServer = (mode: "fast" | "immediate") => {
    try {
      ctl("-m", mode, "stop");
    } catch {
      // Not running.
    }
  };
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    stopServer("immediate");
    fs.rmSync(dir, { recursive: true, force: true });
  };
  startServer();
  process.once("exit", remove);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let n = 0;
  const query = async <R extends object>(target: string, sql: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: target });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as R[];
    } finally {
      await client.end();
    }
  };
  return {
    url,
    port,
    dir,
    query,
    database: async (name = `t${process.pid}_${++n}`) => {
      await query(url, `CREATE DATABASE "${name}"`);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop: () => stopServer("fast"),
    start: startServer,
    remove,
  };
}

/** Stops and removes the clusters of test processes that died without removing theirs. */
function removeOrphans(bin: string): void {
  const tmp = process.getuid?.() === 0 ? "/tmp" : os.tmpdir();
  for (const name of fs.readdirSync(tmp).filter((n) => n.startsWith("nanollm-pg-"))) {
    const dir = path.join(tmp, name);
    let owner: number;
    try {
      owner = Number(fs.readFileSync(path.join(dir, "owner"), "utf8"));
      process.kill(owner, 0);
      continue;
    } catch (err) {
      // No owner file yet (being created) or a live owner: leave it.
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") continue;
    }
    const args = [path.join(bin, "pg_ctl"), "-D", path.join(dir, "data"), "-m", "immediate", "-w", "stop"];
    spawnSync(process.getuid?.() === 0 ? "runuser" : args[0]!, process.getuid?.() === 0 ? ["-u", "postgres", "--", ...args] : args.slice(1), { stdio: "ignore", cwd: "/" });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The newest installed PostgreSQL's bin folder (Debian keeps them under /usr/lib/postgresql/N/bin). */
function binDir(): string | undefined {
  const base = "/usr/lib/postgresql";
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, "bin", "initdb"))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  return newest && path.join(base, newest, "bin");
}

/** apt-get install postgresql (root only); the bin folder it brings. */
function install(): string {
  if (process.getuid?.() !== 0) throw new Error("it is not installed and installing it needs root");
  for (const args of [["update"], ["install", "-y", "--no-install-recommends", "postgresql"]]) {
    const r = spawnSync("apt-get", args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, timeout: 600_000 });
    if (r.status !== 0) throw new Error(`apt-get ${args[0]} failed: ${r.stderr?.toString() ?? r.error?.message ?? ""}`);
  }
  const bin = binDir();
  if (!bin) throw new Error("apt-get installed postgresql but no initdb is under /usr/lib/postgresql");
  return bin;
}
