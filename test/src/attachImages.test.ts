// The client's side of image chat: image names and URLs found in a typed line, files read and URLs
// downloaded by the client (size-capped, time-bounded), never a path sent to the daemon.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { describe, it } from "node:test";
import { describeImage, imageSize, MAX_IMAGE_BYTES, parseImageLine, readImage, withImageMarks } from "nanollm/dist/client/attachImages.js";
import { tempDir } from "./helpers/fixtures.js";
import { gradient, makeBmp, makePng } from "./helpers/images.js";

describe("image names in a typed line", () => {
  it("finds a path anywhere in the line, as the reference does", () => {
    assert.deepEqual(parseImageLine("photo.jpg what is this?"), { text: "what is this?", sources: ["photo.jpg"], offsets: [0] });
    assert.deepEqual(parseImageLine("what is in ./pics/cat.PNG and 'my dog.jpeg'?"), { text: "what is in and ?", sources: ["./pics/cat.PNG", "my dog.jpeg"], offsets: [11, 15] });
    assert.deepEqual(parseImageLine("look https://example.org/a/b.gif?x=1 now"), { text: "look now", sources: ["https://example.org/a/b.gif?x=1"], offsets: [5] });
  });

  it("says where each image stood in the text, in characters: before the next word, or at the end", () => {
    assert.deepEqual(parseImageLine("compare a.jpg with  b.jpg"), { text: "compare with", sources: ["a.jpg", "b.jpg"], offsets: [8, 12] });
    assert.deepEqual(parseImageLine("été a.png ok"), { text: "été ok", sources: ["a.png"], offsets: [4] });
  });

  it("punctuation typed right after a file name is the sentence's, not the name's", () => {
    const there = () => true;
    assert.deepEqual(parseImageLine("is /tmp/a.png brighter than /tmp/b.png?", there), { text: "is brighter than?", sources: ["/tmp/a.png", "/tmp/b.png"], offsets: [3, 16] });
    assert.deepEqual(parseImageLine("cat.jpg: what is it?", there), { text: "what is it?", sources: ["cat.jpg"], offsets: [0] });
    // No such file: the word is prose, as it was typed.
    assert.deepEqual(parseImageLine("rename it to final.png.", () => false), { text: "rename it to final.png.", sources: [], offsets: [] });
    assert.deepEqual(parseImageLine("see https://example.org/b.gif?"), { text: "see", sources: ["https://example.org/b.gif?"], offsets: [3] });
  });

  it("the transcript shows images typed inside a message where they stand (those before it were shown as read)", () => {
    const shown = (line: string) => {
      const p = parseImageLine(line, () => true);
      return withImageMarks(p.text, p.sources.map((name, i) => ({ name, data: new Uint8Array(), offset: p.offsets[i] })));
    };
    assert.equal(shown("is a.png brighter than b.png?"), "is [a.png] brighter than [b.png]?");
    assert.equal(shown("look at a.png, then b.png."), "look at [a.png], then [b.png].");
    assert.equal(shown("a.jpg what is it?"), "what is it?");
  });

  it("leaves plain text and other URLs alone", () => {
    assert.deepEqual(parseImageLine("tell me about jpg files and https://example.org/page"), { text: "tell me about jpg files and https://example.org/page", sources: [], offsets: [] });
  });
});

describe("reading images on the client", () => {
  const dir = tempDir("attach");
  const png = makePng(64, 32, gradient);
  fs.writeFileSync(path.join(dir, "g.png"), png);

  it("reads a file and describes it for the transcript", async () => {
    const a = await readImage("g.png", dir);
    assert.equal(a.name, "g.png");
    assert.deepEqual(Buffer.from(a.data), png);
    assert.deepEqual(imageSize(a.data), { width: 64, height: 32 });
    assert.match(describeImage(a), /^g\.png, 64×32, \d+ (B|KB)$/);
    assert.deepEqual(imageSize(makeBmp(5, 7, gradient)), { width: 5, height: 7 });
  });

  it("a missing file is an error, never text sent to the model", async () => {
    await assert.rejects(readImage("missing.jpg", dir), /^Error: No image file missing\.jpg; check the path \(nothing was sent\)\.$/);
  });

  it("downloads a URL, and refuses a too-large one, a 404 and an unreachable host with one sentence", async () => {
    const server = http.createServer((req, res) => {
      if (req.url === "/ok.png") return res.end(png);
      if (req.url === "/big.png") {
        res.setHeader("content-length", String(MAX_IMAGE_BYTES + 1));
        return res.end();
      }
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const a = await readImage(`${base}/ok.png`);
      assert.equal(a.name, "ok.png");
      assert.equal(a.data.length, png.length);
      await assert.rejects(readImage(`${base}/big.png`), /more than the limit/);
      await assert.rejects(readImage(`${base}/nope.png`), /HTTP 404/);
    } finally {
      server.close();
    }
    await assert.rejects(readImage("http://127.0.0.1:1/x.png"), /^Error: Could not download http:\/\/127\.0\.0\.1:1\/x\.png \(.+\); check the address and the network/);
  });
});
