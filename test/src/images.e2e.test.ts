// Image chat over the real daemon: images travel as bytes with a turn, are stored once by hash,
// take their place in the session's KV history, and come back exactly after a restart.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import fs from "node:fs";
import path from "node:path";
import type { RunningDaemon } from "@nanollm/daemon";
import { inProcessDaemon, nanollm, spawnDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { checkerboard, gradient, makePng, webpBytes } from "./helpers/images.js";

/** A gRPC status as a number (error events) or the client's NanoError name. */
const isCode = (code: unknown, n: number, name: string) => code === n || code === name;

const pngA = { name: "gradient.png", data: makePng(64, 64, gradient) };
const pngB = { name: "checker.png", data: makePng(64, 64, checkerboard) };

async function say(client: NanoClient, sessionId: string, text: string, images: { name: string; data: Uint8Array }[] = [], maxNewTokens = 16) {
  const ids: number[] = [];
  for await (const ev of client.turn(sessionId, text, { maxNewTokens, minNewTokens: maxNewTokens }, undefined, undefined, images)) {
    if (ev.kind?.$case === "text") ids.push(...ev.kind.text.tokenIds);
    if (ev.kind?.$case === "end") return { ids, stats: ev.kind.end.stats! };
    // A failed turn ends with an error event (or, from older daemons, the stream's status).
    const kind = ev.kind as { $case: string; error?: { code: number; message: string } } | undefined;
    if (kind?.$case === "error") throw Object.assign(new Error(kind.error!.message), { code: kind.error!.code });
  }
  throw new Error("the turn ended without an end event");
}

describe("image chat", () => {
  let d: TestDaemon & { daemon: unknown };
  const dataDir = tempDir("images");
  const withImages = () => inProcessDaemon(tinyModel(), { dataDir, parallel: 2, daemon: { mmproj: tinyMmproj() } } as Parameters<typeof inProcessDaemon>[1]);
  before(async () => {
    d = await withImages();
  });
  after(() => d.stop());

  it("the model says it takes images", async () => {
    const [m] = await d.client.listModels();
    assert.equal(m?.images, true);
    assert.match(m?.mmproj ?? "", /tiny-mmproj\.gguf$/);
  });

  it("the image changes the reply, the same image in a fresh session gives the same reply, and the next turn evaluates only its text", async () => {
    const s1 = await d.client.createSession({ chatTemplate: "chat-ml" });
    const a = await say(d.client, s1.sessionId, "What is in this picture?", [pngA]);
    const b = await say(d.client, (await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId, "What is in this picture?", [pngB]);
    const none = await say(d.client, (await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId, "What is in this picture?");
    const again = await say(d.client, (await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId, "What is in this picture?", [pngA]);
    assert.notDeepEqual(a.ids, b.ids);
    assert.notDeepEqual(a.ids, none.ids);
    assert.deepEqual(again.ids, a.ids);
    const before2 = await d.client.getSession(s1.sessionId, true);
    const second = await say(d.client, s1.sessionId, "And the colours?");
    assert.equal(second.stats.reusedTokens, before2.contextUsed, "the image and turn 1 come from the cache");
    assert.ok(second.stats.evaluatedTokens < 30, `evaluated ${second.stats.evaluatedTokens} tokens`);
    const shown = (await d.client.getSession(s1.sessionId, true)).history[0]!;
    assert.equal(shown.images.length, 1);
    assert.deepEqual({ ...shown.images[0], sha256: shown.images[0]!.sha256.length }, { name: "gradient.png", sizeBytes: pngA.data.length, sha256: 64, width: 64, height: 64, offset: 0 });
  });

  it("a restart brings the session's image back: the next reply equals a never-restarted twin's", async () => {
    const twin = await inProcessDaemon(tinyModel(), { parallel: 2, daemon: { mmproj: tinyMmproj() } } as Parameters<typeof inProcessDaemon>[1]);
    try {
      const x = await d.client.createSession({ chatTemplate: "chat-ml" });
      const y = await twin.client.createSession({ chatTemplate: "chat-ml" });
      for (const c of [[d.client, x.sessionId], [twin.client, y.sessionId]] as const) {
        await say(c[0], c[1], "Look at this.", [pngB]);
        await say(c[0], c[1], "Tell me more.");
      }
      const y3 = await say(twin.client, y.sessionId, "Once more?");
      await d.stop();
      d = await withImages();
      const x3 = await say(d.client, x.sessionId, "Once more?");
      assert.deepEqual(x3.ids, y3.ids);
    } finally {
      await twin.stop();
    }
  });

  it("the template places the image: llava-v1 puts a newline after it, chat-ml nothing", async () => {
    const used = async (template: string, images: { name: string; data: Uint8Array }[]) => {
      const s = await d.client.createSession({ chatTemplate: template, systemPrompt: "" });
      await say(d.client, s.sessionId, "What is this?", images, 1);
      return (await d.client.getSession(s.sessionId)).contextUsed;
    };
    const shown = async (template: string) => (await used(template, [pngA])) - (await used(template, []));
    assert.equal(await shown("chat-ml"), 16, "the image's 16 positions");
    // The newline is template text after other tokens, tokenized as the engine does such glue.
    const host = (await (d.daemon as RunningDaemon).state.models.list())[0]!;
    const lead = { kind: "tokens" as const, ids: [0], text: "" };
    const newline = host.tokenize([lead, { kind: "control", text: "\n" }]).length - host.tokenize([lead]).length;
    assert.ok(newline >= 1);
    assert.equal(await shown("llava-v1"), 16 + newline, "the image and the newline after it");
  });

  it("bad bytes, WebP, too many images: one sentence each, and the daemon keeps serving", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    await assert.rejects(say(d.client, s.sessionId, "hm", [{ name: "junk.png", data: Buffer.from("not an image") }]), (e: Error & { code?: unknown }) => isCode(e.code, 3, "INVALID_ARGUMENT") && /could not be (read|decoded)/.test(e.message));
    await assert.rejects(say(d.client, s.sessionId, "hm", [{ name: "x.webp", data: webpBytes() }]), (e: Error & { code?: unknown }) => isCode(e.code, 3, "INVALID_ARGUMENT") && /WebP/.test(e.message));
    await assert.rejects(say(d.client, s.sessionId, "hm", Array.from({ length: 9 }, () => pngA)), (e: Error & { code?: unknown }) => isCode(e.code, 3, "INVALID_ARGUMENT") && /limit of 8/.test(e.message));
    assert.ok((await say(d.client, s.sessionId, "Still there?")).ids.length > 0);
  });
});

describe("a model without a projector", () => {
  it("refuses an image with FAILED_PRECONDITION and one sentence", async () => {
    const d = await inProcessDaemon(tinyModel(), { parallel: 1 });
    try {
      const s = await d.client.createSession({ chatTemplate: "chat-ml" });
      await assert.rejects(say(d.client, s.sessionId, "What is this?", [pngA]), (e: Error & { code?: unknown }) => isCode(e.code, 9, "FAILED_PRECONDITION") && /takes no images/.test(e.message) && !/\n/.test(e.message));
    } finally {
      await d.stop();
    }
  });
});

describe("nanollm chat --image", () => {
  it("sends the file's bytes with the first prompt; a missing file is one sentence and nothing is sent", async () => {
    const d = await spawnDaemon(tinyModel(), ["--mmproj", tinyMmproj(), "--ephemeral"]);
    const dir = tempDir("chat-image");
    fs.writeFileSync(path.join(dir, "g.png"), pngA.data);
    try {
      const base = ["chat", "--host", d.address, "--chat-template", "chat-ml", "--max-new-tokens", "12", "--prompt", "What is this?"];
      const withImage = await nanollm([...base, "--image", path.join(dir, "g.png")]);
      const without = await nanollm(base);
      assert.equal(withImage.code, 0, withImage.stderr);
      assert.match(withImage.stderr, /\[image g\.png, 64×64, \d+ KB\]/);
      assert.notEqual(withImage.stdout, without.stdout, "the image changes the reply");
      const missing = await nanollm([...base, "--image", path.join(dir, "nope.jpg")]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /No image file .*nope\.jpg; check the path \(nothing was sent\)\./);
      assert.doesNotMatch(missing.stderr, /\n\s+at /);
    } finally {
      await d.stop();
    }
  });
});
