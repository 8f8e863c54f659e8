import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { StopReason } from "@nanollm/shared";
import { spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";
import { replayTurn } from "./helpers/replay.js";

const PROMPTS = ["Hello there, how are you today?", "Tell me about the world and the tree.", "What did you learn from it?"];

describe("a chat over the real daemon process", () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--parallel", "4", "--ctx", "1024"]);
  });
  after(() => d.stop());

  it("reuses the KV cache: turn 3 evaluates only its new tokens and equals a fresh evaluation", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const t1 = await turn(d.client, s.sessionId, PROMPTS[0]!);
    const t2 = await turn(d.client, s.sessionId, PROMPTS[1]!);
    const before3 = await d.client.getSession(s.sessionId, true);
    const t3 = await turn(d.client, s.sessionId, PROMPTS[2]!);

    for (const t of [t1, t2, t3]) {
      assert.equal(t.end.stopReason, StopReason.STOP_REASON_MAX_TOKENS);
      assert.equal(t.ids.length, 24, "each reply streams its 24 sampled token ids");
      assert.equal(t.streamed, t.text, "the streamed deltas add up to the final reply");
      assert.ok(t.text.length > 0);
    }
    const st = t3.end.stats!;
    assert.equal(st.reusedTokens, before3.contextUsed, "the whole history up to turn 3 comes from the cache");
    assert.equal(st.evaluatedTokens, st.inputTokens - before3.contextUsed);
    assert.ok(st.evaluatedTokens < 30 && st.inputTokens > 80, `evaluated ${st.evaluatedTokens} of ${st.inputTokens}`);

    // A fresh session handed the same history at once must produce the same greedy reply.
    const f3 = await replayTurn(d.client, before3.history, PROMPTS[2]!, 24);
    assert.deepEqual(f3.ids, t3.ids);
    assert.equal(f3.text, t3.text);
    assert.equal(f3.end.stats!.reusedTokens, 0);
    assert.equal(f3.end.stats!.evaluatedTokens, st.inputTokens, "the fresh session evaluated everything");
  });

  it("keeps two interleaved sessions from changing each other's replies", async () => {
    const alone: string[][] = [];
    for (const seed of [0, 1]) {
      const s = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: `You are bot ${seed}.` });
      alone.push([(await turn(d.client, s.sessionId, PROMPTS[seed]!)).text, (await turn(d.client, s.sessionId, PROMPTS[2]!)).text]);
    }
    const a = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "You are bot 0." });
    const b = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "You are bot 1." });
    const [a1, b1] = await Promise.all([turn(d.client, a.sessionId, PROMPTS[0]!), turn(d.client, b.sessionId, PROMPTS[1]!)]);
    const [b2, a2] = await Promise.all([turn(d.client, b.sessionId, PROMPTS[2]!), turn(d.client, a.sessionId, PROMPTS[2]!)]);
    assert.deepEqual([a1.text, a2.text], alone[0]);
    assert.deepEqual([b1.text, b2.text], alone[1]);
    assert.notDeepEqual(alone[0], alone[1], "the two conversations differ, so a mix-up would show");
  });

  it("reports the context used as the history, template and system prompt change", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const empty = (await d.client.getSession(s.sessionId)).contextUsed;
    await turn(d.client, s.sessionId, PROMPTS[0]!);
    const one = (await d.client.getSession(s.sessionId)).contextUsed;
    await turn(d.client, s.sessionId, PROMPTS[1]!);
    const two = (await d.client.listSessions()).find((x) => x.sessionId === s.sessionId)!.contextUsed;
    assert.ok(empty < one && one < two, `${empty} < ${one} < ${two}`);
    assert.equal((await d.client.truncateSession(s.sessionId, 2)).contextUsed, one, "undoing the last exchange gives back its tokens");
    const system = "You are a terse assistant who answers in one short sentence and never asks anything back.";
    const withSystem = (await d.client.updateSession(s.sessionId, { systemPrompt: system })).contextUsed;
    assert.notEqual(withSystem, one, "the new system prompt changes the rendered length");
    const fresh = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: system, history: (await d.client.getSession(s.sessionId, true)).history });
    assert.equal(fresh.contextUsed, withSystem, "the same conversation rendered afresh has the same length");
  });
});

describe("more sessions than KV-cache sequences", () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--parallel", "1", "--ctx", "1024"]);
  });
  after(() => d.stop());

  it("lends the one sequence back and forth, parking caches on disk, without changing replies", async () => {
    const a = await d.client.createSession({ chatTemplate: "chat-ml" });
    const b = await d.client.createSession({ chatTemplate: "chat-ml" });
    const a1 = await turn(d.client, a.sessionId, PROMPTS[0]!);
    const b1 = await turn(d.client, b.sessionId, PROMPTS[1]!);
    const aBefore = await d.client.getSession(a.sessionId);
    assert.equal(aBefore.cachedTokens, 0, "a's sequence was lent to b");
    const a2 = await turn(d.client, a.sessionId, PROMPTS[2]!);
    assert.equal(a2.end.stats!.reusedTokens, aBefore.contextUsed, "a's cache came back from its state file, not by re-prefill");
    const c = await d.client.createSession({ chatTemplate: "chat-ml" });
    await turn(d.client, c.sessionId, PROMPTS[0]!).then((c1) => assert.equal(c1.text, a1.text));
    const b2 = await turn(d.client, b.sessionId, PROMPTS[2]!);

    const ref = await spawnDaemon(tinyModel(), ["--parallel", "2", "--ctx", "1024"]);
    try {
      const ra = await ref.client.createSession({ chatTemplate: "chat-ml" });
      const rb = await ref.client.createSession({ chatTemplate: "chat-ml" });
      assert.equal((await turn(ref.client, ra.sessionId, PROMPTS[0]!)).text, a1.text);
      assert.equal((await turn(ref.client, rb.sessionId, PROMPTS[1]!)).text, b1.text);
      assert.equal((await turn(ref.client, ra.sessionId, PROMPTS[2]!)).text, a2.text);
      assert.equal((await turn(ref.client, rb.sessionId, PROMPTS[2]!)).text, b2.text);
    } finally {
      await ref.stop();
    }
  });
});
