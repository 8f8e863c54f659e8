import { execFileSync, spawn, type ChildProcess } from "node:child_process";

/** Two network namespaces joined by a veth pair: a LAN of two hosts on one machine. */
export interface Lan {
  /** Namespace names and their addresses. */
  server: { ns: string; address: string };
  client: { ns: string; address: string };
  /** Spawns `node ARGS` inside a namespace. */
  node(ns: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  /** Deletes both namespaces (and with them the veth pair). */
  remove(): void;
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });

/** Sets up the LAN, or returns why it cannot be (not root, no `ip`, namespaces not permitted). */
export function makeLan(): Lan | string {
  const tag = `${process.pid % 100000}`;
  const server = { ns: `nlsrv${tag}`, address: "10.213.7.1", link: `nls${tag}` };
  const client = { ns: `nlcli${tag}`, address: "10.213.7.2", link: `nlc${tag}` };
  try {
    ip("netns", "add", server.ns);
  } catch (err) {
    return `network namespaces are not available here (ip netns add: ${((err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message).trim()})`;
  }
  const remove = () => {
    for (const ns of [server.ns, client.ns]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // Already gone.
      }
    }
  };
  try {
    ip("netns", "add", client.ns);
    ip("link", "add", server.link, "type", "veth", "peer", "name", client.link);
    for (const side of [server, client]) {
      ip("link", "set", side.link, "netns", side.ns);
      ip("-n", side.ns, "addr", "add", `${side.address}/24`, "dev", side.link);
      ip("-n", side.ns, "link", "set", side.link, "up");
      ip("-n", side.ns, "link", "set", "lo", "up");
      // mDNS sends to 224.0.0.251; a LAN host has a default route that covers it, these need one.
      ip("-n", side.ns, "route", "add", "224.0.0.0/4", "dev", side.link);
    }
  } catch (err) {
    remove();
    return `could not build the two-host network (${((err as { stderr?: Buffer }).stderr?.toString() || (err as Error).message).trim()})`;
  }
  return {
    server: { ns: server.ns, address: server.address },
    client: { ns: client.ns, address: client.address },
    node: (ns, args, env) => spawn("ip", ["netns", "exec", ns, process.execPath, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } }),
    remove,
  };
}

/** Runs `node ARGS` in a namespace to completion. */
export function runIn(lan: Lan, ns: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = lan.node(ns, args, env);
    let stdout = "";
    let stderr = "";
    proc.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
    proc.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    // 'close', not 'exit': after 'exit' the last of its output may still be unread.
    proc.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
