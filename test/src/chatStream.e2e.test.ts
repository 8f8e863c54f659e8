import assert from "node:assert/strict";
import { status, credentials } from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { ChatServiceClient, Role, StopReason, type ChatEvent, type ChatRequest } from "@nanollm/shared";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";
import { assertNextTurnMatchesReplay } from "./helpers/replay.js";

describe("the Chat stream and what a turn's end carries", () => {
  let d: TestDaemon;
  let chat: ChatServiceClient;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { parallel: 2 });
    chat = new ChatServiceClient(d.address, credentials.createInsecure());
  });
  after(async () => {
    chat.close();
    await d.stop();
  });

  /** Writes `requests` on one stream, half-closes it, and collects every event until the stream ends. */
  const stream = (requests: ChatRequest[]) =>
    new Promise<{ events: ChatEvent[]; status: number }>((resolve) => {
      const call = chat.chat();
      const events: ChatEvent[] = [];
      call.on("data", (ev: ChatEvent) => events.push(ev));
      call.on("status", (s: { code: number }) => resolve({ events, status: s.code }));
      for (const r of requests) call.write(r);
      call.end();
    });
  const userTurn = (turnId: string, sessionId: string, text: string): ChatRequest => ({ kind: { $case: "userTurn", userTurn: { turnId, sessionId, text, params: { maxNewTokens: 6 }, images: [] } } });

  it("a bad turn ends with its own error event; the other turns on the stream go on (defect 15)", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const r = await stream([userTurn("bad", "no-such-session", "hi"), userTurn("empty", s.sessionId, "  "), userTurn("good", s.sessionId, "Hello there")]);
    assert.equal(r.status, status.OK, "the stream itself ends cleanly");
    const bad = r.events.filter((e) => e.turnId === "bad");
    assert.deepEqual(bad.map((e) => e.kind?.$case), ["error"]);
    assert.equal(bad[0]!.kind?.$case === "error" && bad[0]!.kind.error.code, status.NOT_FOUND);
    assert.match(bad[0]!.kind?.$case === "error" ? bad[0]!.kind.error.message : "", /There is no session "no-such-session"/);
    const empty = r.events.filter((e) => e.turnId === "empty");
    assert.equal(empty[0]!.kind?.$case === "error" && empty[0]!.kind.error.code, status.INVALID_ARGUMENT);
    const good = r.events.filter((e) => e.turnId === "good");
    assert.equal(good.at(-1)?.kind?.$case, "end", "the good turn ran to its end");
    assert.ok(good.some((e) => e.kind?.$case === "text"));
  });

  it("each turn has its own signal: a CancelTurn stops that turn only", async () => {
    const a = await d.client.createSession({ chatTemplate: "chat-ml" });
    const b = await d.client.createSession({ chatTemplate: "chat-ml" });
    const events: ChatEvent[] = [];
    await new Promise<void>((resolve) => {
      const call = chat.chat();
      call.on("data", (ev: ChatEvent) => {
        events.push(ev);
        // The long turn is cancelled once the short one ended; the stream is closed when both did.
        if (ev.turnId === "short" && ev.kind?.$case === "end") call.write({ kind: { $case: "cancel", cancel: { turnId: "long" } } });
        if (ev.turnId === "long" && ev.kind?.$case === "end") call.end();
      });
      call.on("status", () => resolve());
      call.write({ kind: { $case: "userTurn", userTurn: { turnId: "long", sessionId: a.sessionId, text: "Tell a long story", params: { maxNewTokens: 3000, minNewTokens: 3000 }, images: [] } } });
      call.write(userTurn("short", b.sessionId, "Hello there"));
    });
    const endOf = (id: string) => events.find((e) => e.turnId === id && e.kind?.$case === "end");
    const long = endOf("long");
    const short = endOf("short");
    assert.equal(long?.kind?.$case === "end" && long.kind.end.stopReason, StopReason.STOP_REASON_CANCELLED);
    assert.ok(long?.kind?.$case === "end" && long.kind.end.stats!.generatedTokens < 3000);
    assert.equal(short?.kind?.$case === "end" && short.kind.end.stopReason, StopReason.STOP_REASON_MAX_TOKENS, "the other turn ran to its own end");
  });

  it("the client throws the turn's one sentence with its code", async () => {
    await assert.rejects(turn(d.client, "no-such-session", "hi"), (err: Error & { code?: string }) => err.code === "NOT_FOUND" && /no session "no-such-session"/.test(err.message));
  });

  it("the end event carries the session as the turn left it (no refresh call needed)", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const t = await turn(d.client, s.sessionId, "Hello there", 6);
    const after = await d.client.getSession(s.sessionId);
    const carried = t.end.session!;
    assert.equal(carried.sessionId, s.sessionId);
    assert.equal(carried.messageCount, 2);
    assert.equal(carried.contextUsed, after.contextUsed);
    assert.equal(carried.lastUserText, "Hello there");
    assert.equal(carried.title, "Hello there");
  });

  it("truncate to the last exchange drops the last user message and its reply; the cache still matches a replay", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await turn(d.client, s.sessionId, "First question", 6);
    await turn(d.client, s.sessionId, "Second question", 6);
    const kept = await d.client.truncateSession(s.sessionId, "last exchange");
    assert.equal(kept.messageCount, 2);
    assert.equal(kept.lastUserText, "First question", "what /retry would send next");
    const info = await d.client.getSession(s.sessionId, true);
    assert.deepEqual(info.history.map((m) => m.role), [Role.ROLE_USER, Role.ROLE_BOT]);
    await assertNextTurnMatchesReplay(d.client, s.sessionId, "Third question");
    const empty = await d.client.createSession({ chatTemplate: "chat-ml" });
    await assert.rejects(d.client.truncateSession(empty.sessionId, "last exchange"), /no user message yet/);
  });

  it("a session is found by the start of its id, in every call (defect 6)", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const prefix = s.sessionId.slice(0, 8);
    assert.equal((await d.client.getSession(prefix)).sessionId, s.sessionId);
    const t = await turn(d.client, prefix, "Hello there", 4);
    assert.equal(t.end.session!.sessionId, s.sessionId, "a turn on the prefix runs on the session");
    await assert.rejects(d.client.getSession(s.sessionId.slice(0, 3)), /There is no session/, "too short a prefix finds nothing");
  });
});
