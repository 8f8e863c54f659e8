import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { StopReason } from "@nanollm/shared";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { eosEagerModel, tinyModel } from "./helpers/fixtures.js";

describe("how replies end, on the real engine", () => {
  let d: TestDaemon;
  let eager: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel());
    eager = await inProcessDaemon(eosEagerModel());
  });
  after(async () => {
    await d.stop();
    await eager.stop();
  });

  it("a strong repetition penalty keeps every reply token out of the 64 tokens before it", async () => {
    const s = await d.client.createSession({ chatTemplate: "raw" });
    const prompt = "the the the the the the the the";
    const ids: number[] = [];
    for await (const ev of d.client.turn(s.sessionId, prompt, { maxNewTokens: 24, minNewTokens: 24, repetitionPenalty: 10 })) {
      if (ev.kind?.$case === "text") ids.push(...ev.kind.text.tokenIds);
    }
    const info = await d.client.getSession(s.sessionId, true);
    const promptIds = info.history[0]!.tokenIds;
    assert.equal(ids.length, 24);
    // Each reply token was sampled with the 64 tokens before it penalized: none may repeat them.
    const all = [...promptIds, ...ids];
    for (let i = promptIds.length; i < all.length; i++) {
      assert.ok(!all.slice(Math.max(0, i - 64), i).includes(all[i]!), `reply token ${i - promptIds.length} (${all[i]}) repeats one of the 64 before it`);
    }
  });

  it("stops at a stop string that spans several tokens and never shows it", async () => {
    const plain = await d.client.createSession({ chatTemplate: "raw" });
    const free = await turn(d.client, plain.sessionId, "Once upon a time", 40);
    // Pick a stop string from the middle of the deterministic greedy reply, across token borders.
    const stop = free.text.slice(20, 32);
    assert.equal(stop.length, 12);
    const s = await d.client.createSession({ chatTemplateJson: JSON.stringify({ name: "raw-with-stop", user: "${MESSAGE}", bot: "${MESSAGE}", stop: [stop] }) });
    const t = await turn(d.client, s.sessionId, "Once upon a time", 40);
    assert.equal(t.end.stopReason, StopReason.STOP_REASON_STOP_STRING);
    assert.equal(t.text, free.text.slice(0, free.text.indexOf(stop)));
    assert.equal(t.streamed, t.text, "no part of the stop string was streamed");
    assert.ok(!t.text.includes(stop));
    // The stop string's tokens were sampled (the same greedy tokens as the free run) and their ids
    // streamed with the turn's last event; only their text was held back.
    assert.equal(t.end.stats!.generatedTokens, t.ids.length, "every sampled id was streamed");
    assert.deepEqual(t.ids, free.ids.slice(0, t.ids.length), "the same greedy tokens as without the stop string");
    assert.ok(t.ids.length < free.ids.length, "it stopped before the free run's end");
  });

  it("ends on the model's end-of-generation token", async () => {
    const s = await eager.client.createSession({ chatTemplate: "chat-ml" });
    const t = await turn(eager.client, s.sessionId, "Hello", 20);
    assert.equal(t.end.stopReason, StopReason.STOP_REASON_EOS);
    assert.equal(t.end.stats!.generatedTokens, 1);
    assert.equal(t.text, "");
  });

  it("honours min_new_tokens even though the model wants to end at once", async () => {
    const s = await eager.client.createSession({ chatTemplate: "chat-ml" });
    let text = "";
    let end;
    for await (const ev of eager.client.turn(s.sessionId, "Hello", { maxNewTokens: 20, minNewTokens: 6 })) {
      if (ev.kind?.$case === "text") text += ev.kind.text.text;
      if (ev.kind?.$case === "end") end = ev.kind.end;
    }
    assert.equal(end?.stopReason, StopReason.STOP_REASON_EOS);
    assert.equal(end?.stats?.generatedTokens, 7, "six forced tokens, then the EOS the model wanted");
    assert.ok(text.length > 0);
    const next = await turn(eager.client, s.sessionId, "Again", 20);
    assert.equal(next.end.stopReason, StopReason.STOP_REASON_EOS, "the session goes on normally");
  });

  it("lets a finished grammar end the reply before min_new_tokens", async () => {
    // The grammar allows "yes" and then only the end; min_new_tokens must not forbid that end.
    const s = await eager.client.createSession({ chatTemplate: "chat-ml" });
    let text = "";
    let end;
    for await (const ev of eager.client.turn(s.sessionId, "Well?", { maxNewTokens: 20, minNewTokens: 10, grammar: 'root ::= "yes"' })) {
      if (ev.kind?.$case === "text") text += ev.kind.text.text;
      if (ev.kind?.$case === "end") end = ev.kind.end;
    }
    assert.equal(text, "yes");
    assert.equal(end?.stopReason, StopReason.STOP_REASON_EOS);
  });
});
