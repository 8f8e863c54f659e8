import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import { credentials } from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { ChatServiceClient, StopReason, type ChatEvent } from "@nanollm/shared";
import { inProcessDaemon, spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import { assertNextTurnMatchesReplay, replayTurn } from "./helpers/replay.js";

const LONG_PROMPT = "hello world ".repeat(1500);


describe("a daemon killed with SIGKILL mid-reply", () => {
  it("restarts with every completed turn of every session, and the next turn works", async () => {
    const dataDir = tempDir("crash");
    const args = ["--data-dir", dataDir, "--ctx", "40000", "--parallel", "2"];
    const first = await spawnDaemon(tinyModel(), args);
    const a = await first.client.createSession({ chatTemplate: "chat-ml" });
    const b = await first.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "Be brief." });
    for (const s of [a, b]) {
      await turn(first.client, s.sessionId, "Hello there", 8);
      await turn(first.client, s.sessionId, "Tell me more", 8);
    }
    const before = await Promise.all([a, b].map((s) => first.client.getSession(s.sessionId, true)));
    // A long reply is streaming when the process dies.
    const long = first.client.turn(a.sessionId, "Now write forever", { maxNewTokens: 30000 });
    assert.equal((await long.next()).value?.kind?.$case, "text");
    first.proc.kill("SIGKILL");
    await once(first.proc, "exit");
    await long.return(undefined).catch(() => undefined);
    first.client.close();

    const second = await spawnDaemon(tinyModel(), args);
    try {
      assert.match(second.log(), /restored 2 sessions/);
      for (const [i, s] of [a, b].entries()) {
        const now = await second.client.getSession(s.sessionId, true);
        assert.equal(now.messageCount, 4, "the completed turns, and not the interrupted one");
        assert.deepEqual(now.history, before[i]!.history, "every message with its exact token ids");
        assert.equal(now.systemPrompt, before[i]!.systemPrompt);
      }
      const next = await turn(second.client, a.sessionId, "Are you back?", 8);
      assert.deepEqual(next.ids, (await replayTurn(second.client, before[0]!.history, "Are you back?", 8)).ids);
    } finally {
      await second.stop();
    }
  });

  it("after a clean stop, a restart resumes each session's KV cache from its state file", async () => {
    const dataDir = tempDir("resume");
    const d = await spawnDaemon(tinyModel(), ["--data-dir", dataDir]);
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await turn(d.client, s.sessionId, "Hello there", 8);
    const used = (await d.client.getSession(s.sessionId)).contextUsed;
    await d.stop();
    const again = await spawnDaemon(tinyModel(), ["--data-dir", dataDir]);
    try {
      const next = await turn(again.client, s.sessionId, "Tell me more", 8);
      assert.equal(next.end.stats!.reusedTokens, used, "nothing was re-prefilled");
    } finally {
      await again.stop();
    }
  });

  it("quarantines a corrupt session file and loads the others", async () => {
    const dataDir = tempDir("corrupt");
    const d = await spawnDaemon(tinyModel(), ["--data-dir", dataDir]);
    const good = await d.client.createSession({ chatTemplate: "chat-ml" });
    await turn(d.client, good.sessionId, "Hello there", 4);
    await d.stop();
    const bad = path.join(dataDir, "sessions", "broken.json");
    fs.writeFileSync(bad, '{"version":1,"id":"broken","history":[{"role":"us');
    const again = await spawnDaemon(tinyModel(), ["--data-dir", dataDir]);
    try {
      assert.match(again.log(), /broken\.json is unreadable .* moved it to .*broken\.json\.corrupt/);
      assert.ok(fs.existsSync(`${bad}.corrupt`));
      assert.equal((await again.client.getSession(good.sessionId, true)).messageCount, 2);
    } finally {
      await again.stop();
    }
  });
});

describe("a client that disconnects", () => {
  let d: TestDaemon;
  let chat: ChatServiceClient;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 4096, parallel: 2 });
    chat = new ChatServiceClient(d.address, credentials.createInsecure());
  });
  after(async () => {
    chat.close();
    await d.stop();
  });

  /** Sends a turn on a raw stream and drops the connection after `ms`, or after the first text. */
  const disconnect = (sessionId: string, text: string, when: { ms?: number; afterText?: boolean }) =>
    new Promise<ChatEvent[]>((resolve) => {
      const call = chat.chat();
      const events: ChatEvent[] = [];
      call.on("data", (ev: ChatEvent) => {
        events.push(ev);
        if (when.afterText && ev.kind?.$case === "text") call.cancel();
      });
      call.on("error", () => resolve(events));
      call.on("end", () => resolve(events));
      call.write({ kind: { $case: "userTurn", userTurn: { sessionId, text, params: { maxNewTokens: 3000 }, turnId: "t1", images: [] } } });
      if (when.ms !== undefined) setTimeout(() => call.cancel(), when.ms);
    });

  const idle = async (sessionId: string) => {
    for (let i = 0; i < 100 && (await d.client.getSession(sessionId)).busy; i++) await new Promise((r) => setTimeout(r, 20));
  };

  it("during prefill: the turn is dropped, the cache keeps a consistent prefix, the next turn equals a fresh one", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await turn(d.client, s.sessionId, "Hello there", 6);
    const events = await disconnect(s.sessionId, LONG_PROMPT, { ms: 120 });
    assert.equal(events.length, 0, "no token was generated: the prefill was cut");
    await idle(s.sessionId);
    const info = await d.client.getSession(s.sessionId, true);
    assert.equal(info.messageCount, 2, "the interrupted turn left no trace");
    assert.ok(info.cachedTokens > info.contextUsed, `part of the long prompt was evaluated (${info.cachedTokens} cached)`);
    assert.ok(info.cachedTokens < 3000, "but not all of it");
    await assertNextTurnMatchesReplay(d.client, s.sessionId, "Short question");
  });

  it("during decode: generation stops, the partial reply is closed with EOS, the next turn equals a fresh one", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const events = await disconnect(s.sessionId, "Write a long story", { afterText: true });
    assert.ok(events.some((e) => e.kind?.$case === "text"));
    await idle(s.sessionId);
    const info = await d.client.getSession(s.sessionId, true);
    assert.equal(info.messageCount, 2);
    const reply = info.history[1]!;
    assert.ok(reply.tokenIds.length < 3000, `stopped after ${reply.tokenIds.length} tokens, within a few decode steps`);
    // llama.cpp takes <|end_of_text|> (6) as this vocab's end-of-turn token; EOS is 2.
    assert.ok([2, 6].includes(reply.tokenIds[reply.tokenIds.length - 1]!), "an end-of-generation token closes the cut reply (rule 4)");
    await assertNextTurnMatchesReplay(d.client, s.sessionId, "Go on");
  });

  it("a deadline cancels the turn the same way", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const call = chat.chat({ deadline: Date.now() + 150 });
    const status = new Promise<number>((resolve) => call.on("error", (e: { code: number }) => resolve(e.code)));
    call.on("data", () => {});
    call.write({ kind: { $case: "userTurn", userTurn: { sessionId: s.sessionId, text: "Write forever", params: { maxNewTokens: 3000 }, turnId: "t", images: [] } } });
    assert.equal(await status, 4, "DEADLINE_EXCEEDED");
    await idle(s.sessionId);
    const info = await d.client.getSession(s.sessionId, true);
    assert.ok(info.history[1]!.tokenIds.length < 3000);
    assert.equal((await turn(d.client, s.sessionId, "ok?", 4)).end.stopReason, StopReason.STOP_REASON_MAX_TOKENS);
  });
});
