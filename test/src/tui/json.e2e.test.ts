import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ChatEvent, StopReason } from "@nanollm/shared";
import { nanollm, spawnDaemon, type TestDaemon } from "../helpers/daemon.js";
import { tinyModel } from "../helpers/fixtures.js";

describe("nanollm chat --json", () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "1024"]);
  });
  after(() => d.stop());

  it("streams every chat event as one JSON object per line", async () => {
    const r = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--json", "--max-new-tokens", "12", "--prompt", "Hi", "--prompt", "More"]);
    assert.equal(r.code, 0, r.stderr);
    const events = r.stdout.trimEnd().split("\n").map((line) => ChatEvent.fromJSON(JSON.parse(line)));
    const ends = events.filter((e) => e.kind?.$case === "end");
    assert.equal(ends.length, 2, "one end event per prompt");
    const first = events.slice(0, events.indexOf(ends[0]!) + 1);
    const text = first.map((e) => (e.kind?.$case === "text" ? e.kind.text.text : "")).join("");
    const end = ends[0]!.kind?.$case === "end" ? ends[0]!.kind.end : undefined;
    assert.equal(text, end?.reply, "the text events add up to the reply");
    assert.equal(end?.stopReason, StopReason.STOP_REASON_MAX_TOKENS);
    assert.equal(end?.stats?.generatedTokens, 12);
    assert.ok(events.every((e) => e.sessionId === events[0]!.sessionId && e.turnId !== ""));
  });
});
