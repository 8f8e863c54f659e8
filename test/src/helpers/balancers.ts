import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./fixtures.js";
import { freePort } from "./ports.js";

/** docker/, where the balancer configurations live (used as they are by docker/compose.yaml). */
export const DOCKER_DIR = fileURLToPath(new URL("../../../docker/", import.meta.url));

export type BalancerKind = "nginx" | "haproxy";

/** One daemon behind the balancer: its gRPC and HTTP ports on 127.0.0.1. */
export interface Backend {
  grpcPort: number;
  httpPort: number;
  /** Taken out of the balancer (nginx's `down`), for a rolling restart. */
  down?: boolean;
}

export interface RunningBalancer {
  kind: BalancerKind;
  /** Where clients connect for gRPC (host:port). */
  address: string;
  /** Where clients connect for the OpenAI/Ollama HTTP APIs (http://host:port). */
  httpBase: string;
  /** The balancer's own output so far (access log, health changes). */
  log(): string;
  /**
   * nginx only: the configuration again with backend `index` taken out (`down`), loaded the way an
   * operator does (`nginx -s reload`: replies already running finish in the old workers); resolves
   * once the new workers serve.
   */
  takeOut(index: number): Promise<void>;
  stop(): Promise<void>;
}

const SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"];
const installed = new Map<BalancerKind, string | undefined>();

/** The balancer's binary, installed from Debian's packages when missing; undefined (with `why`) where that cannot be done. */
export function ensureBalancer(kind: BalancerKind): { binary: string } | { why: string } {
  const found = which(kind);
  if (found) return { binary: found };
  // nginx-light is bookworm's small build (gRPC and hash included); later Debian releases have only nginx.
  if (!installed.has(kind)) installed.set(kind, kind === "nginx" ? aptInstall(["nginx-light"]) && aptInstall(["nginx"]) : aptInstall(["haproxy"]));
  const failure = installed.get(kind);
  const binary = which(kind);
  return binary ? { binary } : { why: `${kind} is not installed and could not be installed from Debian's packages${failure ? `: ${failure}` : ""}` };
}

/**
 * docker/nginx.conf for `backends` on loopback: its listen ports become 127.0.0.1 ones, and each
 * upstream's servers (written for the compose/k8s names) become one line per backend with the same
 * parameters. Nothing else changes, so the test runs the configuration operators use.
 */
export function renderNginx(text: string, ports: { grpc: number; http: number }, backends: Backend[]): string {
  return expandServers(
    text.replace(/^(\s*)listen 7433 http2;$/m, `$1listen 127.0.0.1:${ports.grpc} http2;`).replace(/^(\s*)listen 7434;$/m, `$1listen 127.0.0.1:${ports.http};`),
    /^(\s*)server nanollm-\d+\.nanollm:(7433|7434)( .*)?;$/,
    (m, i, b) => `${m[1]}server 127.0.0.1:${m[2] === "7433" ? b.grpcPort : b.httpPort}${m[3] ?? ""}${b.down ? " down" : ""};`,
    backends,
  );
}

/** docker/haproxy.cfg for `backends` on loopback, rendered like renderNginx (server names kept: `track` uses them). */
export function renderHaproxy(text: string, ports: { grpc: number; http: number }, backends: Backend[]): string {
  return expandServers(
    text.replace(/^(\s*)bind :7433 proto h2$/m, `$1bind 127.0.0.1:${ports.grpc} proto h2`).replace(/^(\s*)bind :7434$/m, `$1bind 127.0.0.1:${ports.http}`),
    /^(\s*)server nanollm-\d+ "nanollm-\d+\.nanollm\$\{NANOLLM_DOMAIN\}:(7433|7434)"( .*)?$/,
    (m, i, b) => `${m[1]}server nanollm-${i} 127.0.0.1:${m[2] === "7433" ? b.grpcPort : b.httpPort}${(m[3] ?? "").replace(/nanollm-\d+/g, `nanollm-${i}`)}`,
    backends,
  );
}

/** Starts nginx or HAProxy with its docker/ configuration rendered for `backends`; resolves once it accepts connections. */
export async function startBalancer(kind: BalancerKind, binary: string, backends: Backend[]): Promise<RunningBalancer> {
  const dir = tempDir(kind);
  // nginx's workers run as nobody when it starts as root: they must reach the temp folders in here.
  fs.chmodSync(dir, 0o755);
  const ports = { grpc: await freePort(), http: await freePort() };
  const file = path.join(dir, kind === "nginx" ? "nginx.conf" : "haproxy.cfg");
  const source = fs.readFileSync(path.join(DOCKER_DIR, path.basename(file)), "utf8");
  fs.writeFileSync(file, kind === "nginx" ? renderNginx(source, ports, backends) : renderHaproxy(source, ports, backends));
  const args = kind === "nginx" ? ["-p", `${dir}/`, "-c", file] : ["-f", file, "-db"];
  // Output to a file, not a pipe: nginx opens /dev/stdout for its access log, which a socket refuses.
  const logFile = path.join(dir, "output.log");
  const fd = fs.openSync(logFile, "a");
  const proc = spawn(binary, args, { cwd: dir, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  const output = () => fs.readFileSync(logFile, "utf8");
  const stop = () => stopProcess(proc);
  try {
    await Promise.all([waitForPort(ports.grpc, proc, output), waitForPort(ports.http, proc, output)]);
  } catch (err) {
    await stop();
    throw err;
  }
  const takeOut = async (index: number) => {
    if (kind !== "nginx") throw new Error("takeOut is for nginx, which has no health checks; HAProxy's take a draining daemon out");
    fs.writeFileSync(file, renderNginx(source, ports, backends.map((b, i) => (i === index ? { ...b, down: true } : b))));
    const workers = () => fs.readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/);
    const old = new Set(workers());
    proc.kill("SIGHUP");
    // Reloaded: a new worker serves, and each old one has let go of its idle client connections
    // (it retitles itself "shutting down" just before it closes them) or is gone.
    const retired = (w: string) => {
      try {
        return fs.readFileSync(`/proc/${w}/cmdline`, "utf8").includes("shutting down");
      } catch {
        return true;
      }
    };
    const deadline = Date.now() + 10_000;
    while (!workers().some((w) => w && !old.has(w)) || ![...old].every(retired)) {
      if (Date.now() > deadline) throw new Error(`nginx did not reload within 10 s:\n${output().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { kind, address: `127.0.0.1:${ports.grpc}`, httpBase: `http://127.0.0.1:${ports.http}`, log: output, takeOut, stop };
}

/** Which daemon ran each turn, from the daemons' own per-turn log lines: session id -> turns per daemon. */
export function placement(daemons: { log(): string }[], ids: string[]): Map<string, number[]> {
  const counts = new Map(ids.map((id) => [id, daemons.map(() => 0)]));
  daemons.forEach((d, i) => {
    for (const m of d.log().matchAll(/^turn \S+ session (\S+) model \S+: /gm)) {
      const row = counts.get(m[1] ?? "");
      if (row) row[i] = (row[i] ?? 0) + 1;
    }
  });
  return counts;
}

/**
 * The placement once every expected turn is logged: a daemon writes a turn's log line just after
 * the client hears the turn ended, and its output reaches this process a moment later.
 */
export async function loggedPlacement(daemons: { log(): string }[], ids: string[], turns: number): Promise<Map<string, number[]>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const counts = placement(daemons, ids);
    const logged = [...counts.values()].flat().reduce((a, b) => a + b, 0);
    if (logged >= ids.length * turns || Date.now() > deadline) return counts;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Replaces the first server line per port of `pattern` with one line per backend, and drops the others. */
function expandServers(text: string, pattern: RegExp, line: (m: RegExpExecArray, i: number, b: Backend) => string, backends: Backend[]): string {
  const done = new Set<string>();
  const out: string[] = [];
  for (const l of text.split("\n")) {
    const m = pattern.exec(l);
    if (!m) {
      out.push(l);
      continue;
    }
    const port = m[2] ?? "";
    if (done.has(port)) continue;
    done.add(port);
    backends.forEach((b, i) => out.push(line(m, i, b)));
  }
  if (done.size !== 2) throw new Error(`expected servers for ports 7433 and 7434 in the configuration, found ${[...done].join(", ") || "none"}`);
  return out.join("\n");
}

function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":"), ...SBIN].filter(Boolean);
  return dirs.map((d) => path.join(d, name)).find((f) => fs.existsSync(f));
}

/** apt-get update + install; the failure's last lines, or undefined when it worked. */
function aptInstall(packages: string[]): string | undefined {
  if (process.getuid?.() !== 0) return "installing needs root (apt-get)";
  if (!which("apt-get")) return "this machine has no apt-get";
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  for (const args of [["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", ...packages]]) {
    const r = spawnSync("apt-get", args, { env, encoding: "utf8", timeout: 300_000 });
    if (r.status !== 0) return `apt-get ${args[0]} failed: ${(r.stderr || r.stdout || String(r.error)).trim().split("\n").slice(-2).join(" ")}`;
  }
  return undefined;
}

async function waitForPort(port: number, proc: ChildProcess, output: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the balancer exited with ${proc.exitCode}:\n${output().slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the balancer did not listen on 127.0.0.1:${port} within ${timeoutMs / 1000} s:\n${output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
