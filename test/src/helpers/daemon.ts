import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startDaemon, type Authorize, type DaemonOptions, type RunningDaemon } from "@nanollm/daemon";
import { waitForReady } from "@nanollm/shared";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { tempDir } from "./fixtures.js";

/** The built CLI entry point. */
export const CLI = fileURLToPath(new URL("../../../cli/bin/nanollm.js", import.meta.url));

export interface TestDaemon {
  address: string;
  client: NanoClient;
  stop(): Promise<void>;
}

/** The real daemon in this process on 127.0.0.1:0, one compute thread (the box has two cores). */
export async function inProcessDaemon(
  modelPath: string,
  opts: { parallel?: number; ctx?: number; dataDir?: string; maxQueue?: number; functionTimeoutMs?: number; batchThreads?: number; adaptiveThreads?: boolean; daemon?: Partial<DaemonOptions>; http?: { bodyBytes?: number; authorize?: Authorize }; maxStatelessSessions?: number } = {},
): Promise<TestDaemon & { daemon: RunningDaemon; logLines: string[] }> {
  const logLines: string[] = [];
  const daemon = await startDaemon({
    // The HTTP APIs on a free loopback port when a test asks for them.
    http: opts.http && { listen: "127.0.0.1:0", required: true, ...opts.http },
    maxStatelessSessions: opts.maxStatelessSessions,
    dataDir: opts.dataDir ?? tempDir("data"),
    maxQueue: opts.maxQueue,
    functionTimeoutMs: opts.functionTimeoutMs,
    modelPath,
    listen: "127.0.0.1:0",
    // Adaptive: no counts given, the loop measures 1 thread against every core.
    threads: opts.adaptiveThreads ? undefined : 1,
    batchThreads: opts.adaptiveThreads ? undefined : (opts.batchThreads ?? 1),
    parallel: opts.parallel ?? 4,
    ctx: opts.ctx ?? 1024,
    gpu: "cpu",
    kvCacheType: "f16",
    log: (line) => logLines.push(line),
    ...opts.daemon,
  });
  const client = new NanoClient(daemon.address);
  return {
    daemon,
    logLines,
    address: daemon.address,
    client,
    stop: async () => {
      client.close();
      await daemon.close(1000);
    },
  };
}

/** `nanollm serve` as a child process; resolves once it prints its ready line. */
export async function spawnDaemon(modelPath: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<TestDaemon & { proc: ChildProcess; log: () => string }> {
  // Each daemon journals into its own fresh folder unless the test names one.
  const dataDir = extra.includes("--data-dir") ? [] : ["--data-dir", tempDir("data")];
  // No HTTP APIs unless the test asks: the default port may be taken by another daemon on this machine.
  const http = extra.includes("--http") ? [] : ["--http", "off"];
  const proc = spawn(process.execPath, [CLI, "serve", "--model", modelPath, "--listen", "127.0.0.1:0", "--threads", "1", ...http, ...(extra.includes("--batch-threads") ? [] : ["--batch-threads", "1"]), "--gpu", "cpu", ...dataDir, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const { address, output } = await waitForReady(proc);
  const client = new NanoClient(address);
  return {
    proc,
    address,
    client,
    log: output,
    stop: async () => {
      client.close();
      // A daemon a test killed has a signalCode and no exitCode: it exited already.
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/** Runs the nanollm CLI to completion, feeding it `stdin` (in another folder or environment when asked). */
export function nanollm(args: string[], stdin = "", opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [CLI, ...args], { stdio: ["pipe", "pipe", "pipe"], cwd: opts.cwd, env: { ...process.env, ...opts.env } });
    let stdout = "";
    let stderr = "";
    proc.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    // 'close', not 'exit': after 'exit' the last of its output may still be unread.
    proc.on("close", (code) => resolve({ code, stdout, stderr }));
    proc.stdin.end(stdin);
  });
}

/** Runs a turn to its end and returns the reply text, its token ids and the end event. */
export async function turn(client: NanoClient, sessionId: string, text: string, maxNewTokens = 24, signal?: AbortSignal) {
  let streamed = "";
  const ids: number[] = [];
  for await (const ev of client.turn(sessionId, text, { maxNewTokens }, signal)) {
    const kind = ev.kind;
    if (kind?.$case === "text") {
      streamed += kind.text.text;
      ids.push(...kind.text.tokenIds);
    } else if (kind?.$case === "end") {
      return { text: kind.end.reply, streamed, ids, end: kind.end };
    }
  }
  throw new Error("the turn's stream ended without a TurnEnd event");
}
