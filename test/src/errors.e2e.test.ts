import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { NanoError, Role, StopReason } from "@nanollm/shared";
import { writeBadMagicGguf, writeTruncatedGguf } from "./gguf/makeCorruptGguf.js";
import { rejectsWith } from "./helpers/assertions.js";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";

describe("bad input gets a clear error and the daemon keeps serving", () => {
  let d: TestDaemon;
  const dir = tempDir("errors");
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { parallel: 2, ctx: 256 });
  });
  after(() => d.stop());

  const stillServes = async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const t = await turn(d.client, s.sessionId, "still there?", 4);
    assert.equal(t.end.stopReason, StopReason.STOP_REASON_MAX_TOKENS);
  };

  it("unknown session", async () => {
    await rejectsWith(turn(d.client, "no-such-session", "hi"), "NOT_FOUND", /no session "no-such-session"/);
    await rejectsWith(d.client.getSession("nope"), "NOT_FOUND", /no session/);
    await stillServes();
  });

  it("empty prompt", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await rejectsWith(turn(d.client, s.sessionId, "   "), "INVALID_ARGUMENT", /empty/);
    await stillServes();
  });

  it("a prompt longer than the context", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await rejectsWith(turn(d.client, s.sessionId, "hello world ".repeat(400)), "INVALID_ARGUMENT", /more than the session's context of 256/);
    const info = await d.client.getSession(s.sessionId, true);
    assert.equal(info.history.length, 0, "the refused turn left no trace in the history");
    await stillServes();
  });

  it("a history that fits only without the functions' docs", async () => {
    const fns = { builtinFunctions: ["DATE", "TIME"] };
    const used = async (words: number, extra = {}) => {
      const history = words ? [{ role: Role.ROLE_USER, text: "tea ".repeat(words), tokenIds: [], images: [] }] : [];
      return (await d.client.createSession({ chatTemplate: "chat-ml", history, ...extra })).contextUsed;
    };
    const docs = (await used(0, fns)) - (await used(0));
    assert.ok(docs > 20, `the docs take ${docs} tokens`);
    // The longest history that fits without the docs.
    let lo = 0;
    let hi = 256;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      const u = await used(mid).catch(() => Infinity);
      if (u < 256 - docs / 2) lo = mid;
      else hi = mid;
    }
    const history = [{ role: Role.ROLE_USER, text: "tea ".repeat(lo), tokenIds: [], images: [] }];
    assert.ok((await used(lo)) + docs >= 256, "the docs push it past the context");
    await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml", history, ...fns }), "INVALID_ARGUMENT", /more than the context of 256/);
    await stillServes();
  });

  it("out-of-range generation settings", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await rejectsWith(d.client.turn(s.sessionId, "hi", { topP: 7 }).next(), "INVALID_ARGUMENT", /top_p must be/);
    await rejectsWith(d.client.createSession({ defaults: { maxNewTokens: 0 } }), "INVALID_ARGUMENT", /max_new_tokens must be/);
    await stillServes();
  });

  it("a missing model file", async () => {
    const missing = path.join(dir, "missing.gguf");
    await rejectsWith(d.client.createSession({ model: missing }), "NOT_FOUND", /does not exist/);
    await rejectsWith(d.client.createSession({ model: "no-such-model" }), "NOT_FOUND", /No model named "no-such-model"/);
    await stillServes();
  });

  it("a corrupt GGUF: truncated, or with a bad magic", async () => {
    const truncated = path.join(dir, "truncated.gguf");
    const badMagic = path.join(dir, "bad-magic.gguf");
    writeTruncatedGguf(tinyModel(), truncated, 0.5);
    writeBadMagicGguf(badMagic, { srcPath: tinyModel() });
    await rejectsWith(d.client.createSession({ model: truncated }), "INVALID_ARGUMENT", /not a loadable GGUF model/);
    await rejectsWith(d.client.createSession({ model: badMagic }), "INVALID_ARGUMENT", /is not a GGUF file; pass a llama.cpp model/);
    await stillServes();
  });

  it("an unknown chat template", async () => {
    await rejectsWith(d.client.createSession({ chatTemplate: "no-such-template" }), "NOT_FOUND", /no chat template "no-such-template"/);
  });

  it("a busy session, then cancelling its turn", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const abort = new AbortController();
    const long = d.client.turn(s.sessionId, "write a long story", { maxNewTokens: 200 }, abort.signal);
    const first = await long.next();
    assert.equal(first.value?.kind?.$case, "text", "the long turn is streaming");
    const refused = (async () => {
      for await (const _ of d.client.turn(s.sessionId, "me too", { maxNewTokens: 4 }, undefined, undefined, [], { noWait: true }));
    })();
    await rejectsWith(refused, "FAILED_PRECONDITION", /already has a turn running/);
    abort.abort();
    let end;
    for await (const ev of long) if (ev.kind?.$case === "end") end = ev.kind.end;
    assert.equal(end?.stopReason, StopReason.STOP_REASON_CANCELLED);
    assert.ok(end!.stats!.generatedTokens < 200, "the cancel stopped the reply early");
    const next = await turn(d.client, s.sessionId, "and now?", 4);
    assert.equal(next.end.stopReason, StopReason.STOP_REASON_MAX_TOKENS, "the session works after the cancel");
  });
});
