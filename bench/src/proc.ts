// Child processes for the daemons under test: spawned with their logs captured, killed on exit.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";

const children = new Set<ChildProcess>();
let hooked = false;

/** Kills every child this process started (SIGKILL); pending requests to them then fail. */
export function killAll(): void {
  for (const c of children) c.kill("SIGKILL");
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** A long-running child whose stdout and stderr are kept (the tail) for parsing and errors. */
export class Child {
  log = "";
  private readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    hookExit();
    children.add(proc);
    const keep = (b: Buffer) => {
      this.log += b.toString();
      if (this.log.length > 1 << 20) this.log = this.log.slice(-(1 << 19));
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    this.exited = new Promise((resolve) => proc.once("exit", (code) => {
      children.delete(proc);
      resolve(code);
    }));
  }

  static start(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Child {
    return new Child(name, spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] }));
  }

  /** Waits until the log matches `re` (returns the match) or the child exits or `timeoutMs` passes. */
  async waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let dead = false;
    void this.exited.then(() => (dead = true));
    for (;;) {
      const m = this.log.match(re);
      if (m) return m;
      if (dead || Date.now() > deadline) {
        throw new Error(`${this.name} ${dead ? "exited" : "did not start in time"}; last log:\n${this.log.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Resident set size from /proc (Linux), or undefined where that is not readable. */
  rssBytes(): number | undefined {
    try {
      const m = fs.readFileSync(`/proc/${this.proc.pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
      return m ? Number(m[1]) * 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Idempotent. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Runs a command to completion and returns its stdout and stderr; throws on failure. */
export function runToEnd(cmd: string, args: string[], timeoutMs: number): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const c = Child.start(cmd, cmd, args);
    let out = "";
    let err = "";
    c.proc.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    c.proc.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => c.proc.kill("SIGKILL"), timeoutMs);
    c.proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ out, err });
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${signal ?? `exit ${code}`}):\n${c.log.slice(-2000)}`));
    });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Share of the machine's CPU time (0..1) used over `ms` while this process and its children idle,
 * i.e. by other work on the machine; undefined where /proc/stat is not readable.
 */
export async function othersCpuShare(ms = 1000): Promise<number | undefined> {
  const sample = (): { busy: number; total: number } | undefined => {
    try {
      const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
      const total = fields.reduce((a, b) => a + b, 0);
      const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
      return { busy: total - idle, total };
    } catch {
      return undefined;
    }
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  if (!a || !b || b.total === a.total) return undefined;
  return (b.busy - a.busy) / (b.total - a.total);
}
