import assert from "node:assert/strict";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { turn } from "./daemon.js";

export interface ChatterReport {
  turns: number;
  failures: string[];
  /** The slowest turn, in ms. */
  slowestMs: number;
}

/**
 * A second client that keeps chatting (4-token turns in its own session) until stopped: the proof
 * that whatever another client does, the daemon keeps serving others.
 */
export async function startChatter(address: string): Promise<{ stop(): Promise<ChatterReport> }> {
  // Its own connection, as another user's client would have.
  const client = new NanoClient(address);
  const session = await client.createSession({ chatTemplate: "chat-ml" });
  const report: ChatterReport = { turns: 0, failures: [], slowestMs: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await turn(client, session.sessionId, `ping ${report.turns}`, 4);
        report.turns++;
      } catch (err) {
        report.failures.push(String(err));
      }
      report.slowestMs = Math.max(report.slowestMs, performance.now() - started);
      // Keep the session short: its history would otherwise grow for as long as the test runs.
      if (report.turns % 20 === 19) await client.resetSession(session.sessionId);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      await client.deleteSession(session.sessionId).catch(() => undefined);
      client.close();
      return report;
    },
  };
}

/** Asserts the chatter got at least `minTurns` turns through, none failed, none slower than `maxMs`. */
export function assertKeptChatting(r: ChatterReport, minTurns: number, maxMs: number): void {
  assert.deepEqual(r.failures, [], "the other client's turns all succeeded");
  assert.ok(r.turns >= minTurns, `the other client got ${r.turns} turns through, expected at least ${minTurns}`);
  assert.ok(r.slowestMs < maxMs, `the other client's slowest turn took ${r.slowestMs.toFixed(0)} ms, more than ${maxMs} ms`);
}

/** Runs `fn` while sampling this process's event-loop delay; returns its result and the worst stall. */
export async function measureStalls<T>(fn: () => Promise<T>): Promise<{ result: T; maxMs: number; p99Ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  try {
    const result = await fn();
    return { result, maxMs: h.max / 1e6, p99Ms: h.percentile(99) / 1e6 };
  } finally {
    h.disable();
  }
}
