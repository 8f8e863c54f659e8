import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NanoError } from "@nanollm/shared";
import { inProcessDaemon, spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";

const CLIENTS = Number(process.env.LOAD_CLIENTS ?? 64);
const TURNS = Number(process.env.LOAD_TURNS ?? 10);
const TOKENS = 6;

const prompt = (client: number, t: number) => `client ${client} says hello number ${t}`;

/** One client's whole conversation; returns its replies' token ids. */
async function converse(d: TestDaemon, client: number): Promise<number[][]> {
  const s = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: `You serve client ${client}.` });
  const replies: number[][] = [];
  for (let t = 0; t < TURNS; t++) replies.push((await turn(d.client, s.sessionId, prompt(client, t), TOKENS)).ids);
  return replies;
}

describe(`load: ${CLIENTS} concurrent clients × ${TURNS} turns over real sockets`, () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--parallel", "8", "--ctx", "1024", "--max-queue", "256"]);
  });
  after(() => d.stop());

  it("has zero errors and every greedy reply equals a sequential run", async () => {
    const results = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, i) => converse(d, i)));
    const errors = results.flatMap((r) => (r.status === "rejected" ? [String(r.reason)] : []));
    assert.deepEqual(errors, []);
    const concurrent = results.map((r) => (r.status === "fulfilled" ? r.value : []));
    // The sequential reference: each conversation alone, one after another, on a fresh daemon.
    const ref = await inProcessDaemon(tinyModel(), { parallel: 8, ctx: 1024 });
    try {
      for (let i = 0; i < CLIENTS; i++) assert.deepEqual(concurrent[i], await converse(ref, i), `client ${i}`);
    } finally {
      await ref.stop();
    }
    assert.notDeepEqual(concurrent[0], concurrent[1], "clients' conversations differ, so a mix-up would show");
  });
});

describe("continuous batching", () => {
  it("steps every generating session in the same round, and none starves", async () => {
    const d = await inProcessDaemon(tinyModel(), { parallel: 4, ctx: 1024 });
    try {
      const host = await d.daemon.state.models.get("");
      const sessions = await Promise.all(Array.from({ length: 4 }, () => d.client.createSession({ chatTemplate: "chat-ml" })));
      // Turns start a little apart (each is rendered and tokenized on the event loop first), so the
      // loop is judged while all four are generating: from the moment the last one got its first
      // token for the next 24 rounds. Meanwhile every round must carry all four, and no
      // session may pull ahead of where it stood when the window opened.
      const counts = [0, 0, 0, 0];
      // Each sequence's cache grows by one token per round it takes part in: the engine's own count.
      const cached = () => sessions.map((s) => host.pool.cachedLength(s.sessionId));
      let window: { stats: ReturnType<typeof host.loopStats>; base: number[] } | undefined;
      let closed: { stats: ReturnType<typeof host.loopStats>; gained: number[] } | undefined;
      await Promise.all(
        sessions.map(async (s, i) => {
          for await (const ev of d.client.turn(s.sessionId, `story ${i}`, { maxNewTokens: 96 })) {
            if (ev.kind?.$case !== "text") continue;
            counts[i] = counts[i]! + ev.kind.text.tokenIds.length;
            if (!window && counts.every((c) => c > 0)) window = { stats: host.loopStats(), base: cached() };
            // Closed by the engine's count, long before the first reply can end (the starts are not 72 tokens apart).
            const gained = window && !closed ? cached().map((c, j) => c - window!.base[j]!) : [];
            if (window && !closed && Math.max(...gained) >= 24) closed = { stats: host.loopStats(), gained };
          }
        }),
      );
      assert.deepEqual(counts, [96, 96, 96, 96]);
      assert.ok(window && closed, "all four generated at the same time");
      const steps = closed.stats.steps - window.stats.steps;
      const perStep = (closed.stats.carried - window.stats.carried) / steps;
      assert.ok(steps > 8, `the four overlapped for ${steps} rounds`);
      assert.ok(perStep > 3.5, `${perStep.toFixed(2)} sessions per round while all four generated`);
      const drift = Math.max(...closed.gained) - Math.min(...closed.gained);
      assert.ok(drift <= 2, `no session ran ahead while all generated (cache growth ${closed.gained.join(", ")})`);
    } finally {
      await d.stop();
    }
  });
});

describe("the wait queue is bounded", () => {
  it("refuses turns past it with RESOURCE_EXHAUSTED and serves the rest", async () => {
    const d = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 2048, maxQueue: 2 });
    try {
      const sessions = await Promise.all(Array.from({ length: 5 }, () => d.client.createSession({ chatTemplate: "chat-ml" })));
      const results = await Promise.allSettled(sessions.map((s) => turn(d.client, s.sessionId, "Tell me a long story", 400)));
      const refused = results.filter((r) => r.status === "rejected");
      for (const r of refused) {
        const err = (r as PromiseRejectedResult).reason as NanoError;
        assert.equal(err.code, "RESOURCE_EXHAUSTED");
        assert.match(err.message, /turns are already waiting/);
      }
      assert.equal(refused.length, 2, "one runs, two wait, two are refused");
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    } finally {
      await d.stop();
    }
  });

  it("serves waiting turns first come, first served", async () => {
    const d = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 2048 });
    try {
      const sessions = await Promise.all(Array.from({ length: 4 }, () => d.client.createSession({ chatTemplate: "chat-ml" })));
      const order: number[] = [];
      await Promise.all(
        sessions.map(async (s, i) => {
          await new Promise((r) => setTimeout(r, i * 30));
          await turn(d.client, s.sessionId, "Tell me a story", 200);
          order.push(i);
        }),
      );
      assert.deepEqual(order, [0, 1, 2, 3]);
    } finally {
      await d.stop();
    }
  });
});
