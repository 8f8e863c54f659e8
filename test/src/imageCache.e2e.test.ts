// Image turns and the KV cache: /undo across an image, eviction (the cache parked on disk and
// brought back), a restart, and the context wrapping past image turns. Each next turn must equal a
// fresh session replaying the same history, images included (replayImagesTurn).
//
// Turns are short (6-token replies, at most two text exchanges after an image before a replay):
// llama.cpp's CPU kernels give slightly different logits for a text batch of 64 tokens or more
// evaluated after image cells than for the same tokens in smaller batches (mtmd's own helper too:
// 5.6548 against 5.6569 for the top logit of this fixture), and the random tiny model has near ties
// (a top-2 gap of 0.01), so a replay whose one long run crosses 64 tokens may pick another token
// although both caches hold the same tokens. Text-only turns are not affected.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import type { RunningDaemon } from "@nanollm/daemon";
import { inProcessDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyIdefics3Mmproj, tinyIdefics3Model, tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { checkerboard, gradient, makePng } from "./helpers/images.js";
import { replayImagesTurn } from "./helpers/replay.js";

type Daemon = TestDaemon & { daemon: RunningDaemon };
const pngA = { name: "gradient.png", data: makePng(64, 64, gradient) };
const pngB = { name: "checker.png", data: makePng(64, 64, checkerboard) };
const withImages = (opts: { parallel?: number; ctx?: number; dataDir?: string } = {}) =>
  inProcessDaemon(tinyModel(), { parallel: opts.parallel ?? 2, ctx: opts.ctx ?? 1024, dataDir: opts.dataDir, daemon: { mmproj: tinyMmproj() } });

/** One greedy turn: its ids, stats and whether the context wrapped. */
async function say(client: NanoClient, sessionId: string, text: string, images: { name: string; data: Uint8Array; offset?: number }[] = [], maxNewTokens = 6) {
  const ids: number[] = [];
  let wrapped = 0;
  for await (const ev of client.turn(sessionId, text, { maxNewTokens }, undefined, undefined, images)) {
    if (ev.kind?.$case === "text") ids.push(...ev.kind.text.tokenIds);
    if (ev.kind?.$case === "wrapped") wrapped += ev.kind.wrapped.droppedMessages;
    if (ev.kind?.$case === "end") return { ids, wrapped, stats: ev.kind.end.stats! };
  }
  throw new Error("the turn ended without an end event");
}

/** The session's next turn equals a fresh session replaying its history (images included). */
async function assertNextMatchesReplay(d: Daemon, sessionId: string, text: string) {
  const fresh = await replayImagesTurn(d, sessionId, text, 6);
  const next = await say(d.client, sessionId, text);
  assert.deepEqual(next.ids, fresh.ids, "the cached session's reply equals a fresh session replaying its history");
  return next;
}

describe("/undo across an image turn", () => {
  let d: Daemon;
  before(async () => {
    d = await withImages();
  });
  after(() => d.stop());

  it("undoing the turn after an image keeps the image; the next turn equals a replay", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await say(d.client, s.sessionId, "Look at this.", [pngA]);
    await say(d.client, s.sessionId, "Tell me more.");
    const after = await d.client.truncateSession(s.sessionId, "last exchange");
    assert.equal(after.messageCount, 2, "the image turn and its reply are kept");
    const shown = await d.client.getSession(s.sessionId, true);
    assert.equal(shown.history[0]!.images[0]!.name, "gradient.png");
    const next = await assertNextMatchesReplay(d, s.sessionId, "What colours?");
    assert.ok(next.stats.reusedTokens > 16, `the image's cells were kept (${next.stats.reusedTokens} reused)`);
  });

  it("undoing the image turn itself drops the image: the next turn equals a session that never saw it", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const never = await d.client.createSession({ chatTemplate: "chat-ml" });
    await say(d.client, s.sessionId, "Hello there.");
    await say(d.client, never.sessionId, "Hello there.");
    await say(d.client, s.sessionId, "Look at this.", [pngB]);
    await d.client.truncateSession(s.sessionId, "last exchange");
    assert.equal((await d.client.getSession(s.sessionId, true)).history.flatMap((m) => m.images).length, 0);
    const next = await assertNextMatchesReplay(d, s.sessionId, "What now?");
    assert.deepEqual(next.ids, (await say(d.client, never.sessionId, "What now?")).ids);
  });
});

describe("eviction and restart with an image in the cache", () => {
  it("a cache parked for another session comes back with its image (no re-prefill), and equals a replay", async () => {
    const d = await withImages({ parallel: 1 });
    try {
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      const b = await d.client.createSession({ chatTemplate: "chat-ml" });
      await say(d.client, a.sessionId, "Look at this.", [pngA]);
      await say(d.client, b.sessionId, "Something else entirely.");
      const parked = await d.client.getSession(a.sessionId);
      assert.equal(parked.cachedTokens, 0, "a's only sequence went to b");
      const images = (await d.daemon.state.models.list())[0]!.loopStats().images;
      const back = await say(d.client, a.sessionId, "Tell me more.");
      assert.equal(back.stats.reusedTokens, parked.contextUsed, "a's cache came back from its state file, the image's cells included");
      assert.equal((await d.daemon.state.models.list())[0]!.loopStats().images, images, "the image was not evaluated again");
      await say(d.client, b.sessionId, "And again.");
      await assertNextMatchesReplay(d, a.sessionId, "Once more?");
    } finally {
      await d.stop();
    }
  });

  it("after a restart the parked cache with the image (standing inside the text) is brought back and equals a replay", async () => {
    const dataDir = tempDir("image-restart");
    let d = await withImages({ dataDir });
    try {
      const s = await d.client.createSession({ chatTemplate: "chat-ml" });
      // The image stands after "Look at": the journal keeps where, or the cache would not match.
      await say(d.client, s.sessionId, "Look at this.", [{ ...pngB, offset: 7 }]);
      const used = (await d.client.getSession(s.sessionId)).contextUsed;
      await d.stop();
      d = await withImages({ dataDir });
      assert.equal((await d.client.getSession(s.sessionId, true)).history[0]!.images[0]!.offset, 7, "the transcript says where the image stood");
      const next = await say(d.client, s.sessionId, "Tell me more.");
      assert.equal(next.stats.reusedTokens, used, "the cache came back from disk, image included");
      await assertNextMatchesReplay(d, s.sessionId, "And the colours?");
    } finally {
      await d.stop();
    }
  });
});

describe("the context wraps past image turns", () => {
  it("drops the oldest turns, images with them, and the turn after equals a replay of what is kept", async () => {
    const d = await withImages({ ctx: 256 });
    try {
      const s = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "" });
      let wrapped = 0;
      for (let t = 0; t < 12 && wrapped === 0; t++) wrapped += (await say(d.client, s.sessionId, `Picture number ${t}, what is it?`, [t % 2 ? pngA : pngB])).wrapped;
      assert.ok(wrapped > 0, "the conversation wrapped");
      const info = await d.client.getSession(s.sessionId, true);
      assert.ok(info.wrappedMessages > 0 && info.history.slice(info.wrappedMessages).some((m) => m.images.length > 0), "images before and after the window's start");
      await assertNextMatchesReplay(d, s.sessionId, "And this one?");
      await assertNextMatchesReplay(d, s.sessionId, "Compare them.");
    } finally {
      await d.stop();
    }
  });
});

describe("a SmolVLM-style model (an image in tiles and an overview) on the smolvlm template", () => {
  it("the turn after the image evaluates only its text and equals a replay", async () => {
    const d = await inProcessDaemon(tinyIdefics3Model(), { parallel: 2, ctx: 1024, daemon: { mmproj: tinyIdefics3Mmproj() } });
    try {
      const s = await d.client.createSession({ chatTemplate: "smolvlm" });
      await say(d.client, s.sessionId, "What is this?", [{ name: "big.png", data: makePng(128, 128, gradient) }]);
      const used = (await d.client.getSession(s.sessionId)).contextUsed;
      const next = await assertNextMatchesReplay(d, s.sessionId, "And then?");
      assert.equal(next.stats.reusedTokens, used, "every tile came from the cache");
    } finally {
      await d.stop();
    }
  });
});
