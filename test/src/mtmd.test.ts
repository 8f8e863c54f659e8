// Images through llama.cpp's multimodal library (daemon/native/src/Mtmd.h): the library built per
// variant, the projector on the tiny generated mmproj, image embeddings evaluated into a context, and
// mmproj files checked before clip.cpp (which crashes the process on a missing tensor).
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NanoError } from "@nanollm/shared";
import { loadLlama, nativeAddon, type NativeModel } from "@nanollm/daemon/dist/engine/native.js";
import { imageLibraryFor, loadProjector, mtmdAddon, type EncodedImage, type NativeProjector, type ProjectorChunk } from "@nanollm/daemon/dist/engine/projector.js";
import { buildTinyMmproj, tinyMmprojImageTokens, tinyQwenImageTokens } from "./gguf/makeTinyMmproj.js";
import { oneSentence } from "./helpers/assertions.js";
import { tempDir, tinyGemma3Mmproj, tinyIdefics3Mmproj, tinyIdefics3Model, tinyMmproj, tinyModel, tinyQwen25vlMmproj, tinyQwen2vlModel } from "./helpers/fixtures.js";
import { checkerboard, gradient, llamaTestJpeg, makeBmp, makePng, webpBytes } from "./helpers/images.js";

const run = promisify(execFile);
const NATIVE_DIR = fileURLToPath(new URL("../../daemon/native/", import.meta.url));
const DIST = fileURLToPath(new URL("../../daemon/dist/engine/", import.meta.url));
const TEXT_EMBD = 128; // makeTinyLlama's default nEmbd



/** The largest absolute difference between two logit vectors. */
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/** `p` rejects with one sentence matching `pattern`. */
async function failsWith(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(oneSentence(e), String(e));
    assert.match((e as Error).message, pattern);
    return true;
  });
}

function imageChunk(chunks: ProjectorChunk[]) {
  const c = chunks.find((x) => x.kind === "image");
  assert.ok(c && c.kind === "image");
  return c;
}

describe("the image library build", () => {
  it("links one library per installed x64 variant, each against that variant's own libllama", () => {
    const libs = fs.readdirSync(path.join(NATIVE_DIR, "build-mtmd", "lib"));
    assert.ok(libs.includes("linux-x64"), `built for ${libs.join(", ")}`);
    assert.ok(!libs.some((v) => /arm/.test(v)), "libraries of another architecture are not linked");
    for (const v of libs) {
      const { stdout } = spawnSync("readelf", ["-d", path.join(NATIVE_DIR, "build-mtmd", "lib", v, "libnanollm-mtmd.so")], { encoding: "utf8" });
      const needed = [...stdout.matchAll(/NEEDED.*\[(.+)\]/g)].map((m) => m[1]);
      const variantDir = fs.readdirSync(path.join(NATIVE_DIR, "..", "..", "node_modules", "@node-llama-cpp")).map((p) => path.join(NATIVE_DIR, "..", "..", "node_modules", "@node-llama-cpp", p, "bins", v)).find((d) => fs.existsSync(d));
      assert.ok(variantDir, v);
      const libllama = fs.readdirSync(variantDir).find((f) => /^libllama\..*so$/.test(f) && !f.includes("common"));
      assert.ok(needed.includes(libllama), `${v} needs ${needed.join(", ")}, not ${libllama}`);
      assert.match(stdout, new RegExp(`(RUNPATH|RPATH).*\\[${fs.realpathSync(variantDir).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    }
  });

  it("loads after llama.cpp, and refuses a missing library or another variant's with one sentence", async () => {
    const cuda = path.join(NATIVE_DIR, "build-mtmd", "lib", "linux-x64-cuda", "libnanollm-mtmd.so");
    const script = `
      import { loadLlama } from ${JSON.stringify(path.join(DIST, "native.js"))};
      import { imageLibraryFor, mtmdAddon } from ${JSON.stringify(path.join(DIST, "projector.js"))};
      const tryLoad = (p) => { try { mtmdAddon().loadMtmd(p); return "loaded"; } catch (e) { return e.message; } };
      const out = [tryLoad("/nonexistent/libnanollm-mtmd.so")];
      const lib = loadLlama("cpu");
      out.push(tryLoad("/nonexistent/libnanollm-mtmd.so"), ${fs.existsSync(cuda) ? `tryLoad(${JSON.stringify(cuda)})` : '"(no cuda variant installed)"'}, tryLoad(imageLibraryFor(lib.variant)));
      console.log(JSON.stringify(out));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script]);
    const [before, missing, other, own] = JSON.parse(stdout) as string[];
    assert.equal(before, "llama.cpp must be loaded before the image library.");
    assert.equal(missing, "The image library /nonexistent/libnanollm-mtmd.so is not built; run 'npm ci' (or 'node daemon/native/mtmd.mjs') to build it.");
    if (fs.existsSync(cuda)) assert.match(other!, /linux-x64-cuda\/libnanollm-mtmd\.so was built for another llama\.cpp variant than the one loaded; use the library built for this variant\.$/);
    assert.equal(own, "loaded");
  });

  it("a second run compiles nothing (objects cached for the bundle's commit)", async () => {
    const started = Date.now();
    const { stderr } = await run(process.execPath, [path.join(NATIVE_DIR, "mtmd.mjs")]);
    assert.match(stderr, /^native: mtmd \(images\) up to date in \d+ s\n$/);
    assert.ok(Date.now() - started < 5000);
  });
});

describe("the projector on the tiny fixtures", () => {
  let model: NativeModel;
  let projector: NativeProjector;
  before(async () => {
    const lib = loadLlama("cpu");
    model = await nativeAddon().loadModel(tinyModel(), { gpuLayers: 0 });
    projector = await loadProjector(tinyMmproj(), model, lib, { threads: 1 });
  });
  after(() => {
    projector.dispose();
    model.dispose();
  });

  const png = makePng(64, 64, gradient);
  async function encodeOne(bytes: Uint8Array): Promise<EncodedImage> {
    const { chunks } = await projector.tokenize(projector.info().marker, [bytes]);
    return projector.encode(imageChunk(chunks).chunk);
  }

  it("reports what it reads and the marker that stands for an image", () => {
    assert.deepEqual(projector.info(), { vision: true, audio: false, marker: "<__media__>", embeddingSize: TEXT_EMBD, mrope: false, nonCausal: false });
  });

  it("splits text at the marker: an image chunk of 16 tokens (64 px, patch 16) and the text's tokens", async () => {
    const { chunks, images } = await projector.tokenize("<__media__> describe", [png]);
    assert.deepEqual(chunks.map((c) => c.kind), ["image", "text"]);
    const img = imageChunk(chunks);
    assert.equal(img.nTokens, tinyMmprojImageTokens());
    assert.equal(img.nTokens, 16);
    assert.equal(img.nPos, 16, "without M-RoPE an image advances the position by its token count");
    const sha = crypto.createHash("sha256").update(png).digest("hex");
    assert.equal(img.id, sha, "the id is the SHA-256 of the file's bytes");
    assert.deepEqual(images, [{ width: 64, height: 64, bytes: png.length, id: sha }]);
    const text = chunks[1]!;
    assert.ok(text.kind === "text");
    assert.deepEqual(Array.from(text.tokens), Array.from(model.tokenize(" describe", true)));
  });

  it("keeps images in order between text pieces, with control tokens in the text", async () => {
    const bmp = makeBmp(40, 30, checkerboard);
    const { chunks, images } = await projector.tokenize("<|im_start|>user\n<__media__> and <__media__><|im_end|>", [png, bmp]);
    assert.deepEqual(chunks.map((c) => c.kind), ["text", "image", "text", "image", "text"]);
    assert.deepEqual(images.map((i) => [i.width, i.height]), [[64, 64], [40, 30]]);
    const first = chunks[0]!;
    assert.ok(first.kind === "text");
    assert.deepEqual(Array.from(first.tokens), Array.from(model.tokenize("<|im_start|>user\n", true)));
  });

  it("encodes an image into nTokens × the text model's embedding size, the same floats every time", async () => {
    const a = await encodeOne(png);
    assert.equal(a.nTokens, 16);
    assert.equal(a.nEmbd, TEXT_EMBD);
    assert.ok(a.ms >= 0);
    const values = a.embd.values();
    assert.equal(values.length, 16 * TEXT_EMBD);
    assert.ok(values.every(Number.isFinite));
    assert.ok(values.some((v) => Math.abs(v) > 0.01), "not all zero");
    const again = await encodeOne(makePng(64, 64, gradient));
    assert.deepEqual(again.embd.values(), values, "the same image twice gives identical embeddings");
    const other = await encodeOne(makePng(64, 64, checkerboard));
    assert.notDeepEqual(other.embd.values(), values, "another image gives other embeddings");
  });

  it("reads JPEG (llama.cpp's test image, 640×488, resized to the projector's 64 px) and BMP", async () => {
    const jpeg = await projector.tokenize("<__media__>", [llamaTestJpeg()]);
    assert.deepEqual(jpeg.images.map((i) => [i.width, i.height]), [[640, 488]]);
    assert.equal((await projector.encode(imageChunk(jpeg.chunks).chunk)).nTokens, 16);
    assert.equal((await encodeOne(makeBmp(64, 64, gradient))).nTokens, 16);
  });

  it("encodes concurrent images one at a time, each with its own result", async () => {
    const [a, b, c] = await Promise.all([encodeOne(png), encodeOne(makePng(64, 64, checkerboard)), encodeOne(png)]);
    assert.deepEqual(a.embd.values(), c.embd.values());
    assert.notDeepEqual(a.embd.values(), b.embd.values());
  });

  it("an evaluated image changes the next token's logits; the same image gives the same logits", async () => {
    const before = model.tokenize("<|im_start|>user\n", true);
    const afterTokens = model.tokenize(" what is this?<|im_end|>\n<|im_start|>assistant\n", true);
    const [a, b] = [await encodeOne(png), await encodeOne(makePng(64, 64, checkerboard))];
    const la = mtmdAddon().evalImageForTest(model, a.embd, before, afterTokens);
    const la2 = mtmdAddon().evalImageForTest(model, (await encodeOne(png)).embd, before, afterTokens);
    const lb = mtmdAddon().evalImageForTest(model, b.embd, before, afterTokens);
    assert.equal(la.length, model.info().vocabSize);
    assert.deepEqual(la2, la, "deterministic");
    assert.notDeepEqual(lb, la, "another image, other logits");
    const pieces = mtmdAddon().evalImageForTest(model, a.embd, before, afterTokens, 5);
    assert.ok(maxDiff(la, pieces) < 1e-3, `the image in pieces of 5 tokens gives the same logits (max difference ${maxDiff(la, pieces)})`);
  });

  for (const [name, bytes] of [
    ["random bytes", Buffer.from("this is not an image at all, just text")],
    ["a truncated PNG", makePng(64, 64, gradient).subarray(0, 60)],
    ["an empty file", Buffer.alloc(0)],
  ] as const) {
    it(`refuses ${name} with one sentence, and keeps working`, async () => {
      await failsWith(projector.tokenize("<__media__>", [bytes]), /^The image (could not be decoded|is empty); send a PNG, JPEG, BMP or GIF file\.$/);
      assert.equal((await encodeOne(png)).nTokens, 16);
    });
  }

  it("refuses a picture larger than the pixel limit from its header, before decoding it", async () => {
    // A 1×1 PNG whose header claims 12000×6000 (a decompression bomb would look like this).
    const bomb = Buffer.from(makePng(1, 1, gradient));
    bomb.writeUInt32BE(12000, 16);
    bomb.writeUInt32BE(6000, 20);
    await failsWith(projector.tokenize("<__media__>", [bomb]), /^The image is 12000×6000 pixels, more than the 67108864 allowed; send a smaller image\.$/);
    await failsWith(projector.tokenize("<__media__>", [png], { maxPixels: 1000 }), /^The image is 64×64 pixels, more than the 1000 allowed/);
  });

  it("refuses a WebP with one sentence saying to convert it", async () => {
    await failsWith(projector.tokenize("<__media__>", [webpBytes()]), /^The image is a WebP, which cannot be decoded here; convert it to PNG or JPEG\.$/);
  });

  it("names the image that failed among several", async () => {
    await failsWith(projector.tokenize("<__media__><__media__>", [png, webpBytes()]), /^Image 2 is a WebP/);
  });

  it("refuses a marker count that differs from the image count", async () => {
    await failsWith(projector.tokenize("two <__media__> <__media__>", [png]), /^The text has 2 image markers \(<__media__>\) but 1 image was given; put one marker per image\.$/);
  });

  it("refuses a projector made for another embedding size with clip's reason", async () => {
    const dir = tempDir("mtmd");
    try {
      const file = path.join(dir, "mmproj-64.gguf");
      fs.writeFileSync(file, buildTinyMmproj({ nEmbdText: 64 }).bytes);
      await assert.rejects(loadProjector(file, model, loadLlama("cpu"), { threads: 1 }), (e: unknown) => {
        assert.ok(e instanceof NanoError && e.code === "INVALID_ARGUMENT");
        assert.match(e.message, /could not be loaded \(mismatch between text model \(n_embd = 128\) and mmproj \(n_embd = 64\)\); check that it is the mmproj file made for this model\.$/);
        return true;
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("disposal is idempotent, refuses later use, and keeps the model alive until then", async () => {
    const p = await loadProjector(tinyMmproj(), model, loadLlama("cpu"), { threads: 1 });
    const { chunks } = await p.tokenize("<__media__>", [png]);
    assert.throws(() => model.dispose(), /still has contexts/);
    const pending = p.encode(imageChunk(chunks).chunk);
    p.dispose();
    p.dispose();
    assert.equal((await pending).nTokens, 16, "an encode under way finishes");
    assert.throws(() => p.info(), /^Error: The projector was disposed\.$/);
    await failsWith(p.tokenize("<__media__>", [png]), /^The projector was disposed\.$/);
    await failsWith(p.encode(imageChunk(chunks).chunk), /^The projector was disposed\.$/);
  });
});

describe("evalImageChunk gives bit for bit the logits of mtmd's own helper (mtmd_helper_eval_chunk_single)", () => {
  const before = () => new Int32Array([1, 3, 864, 33]);
  const afterTokens = () => new Int32Array([373, 377, 950, 4, 33, 3]);
  for (const [name, modelFile, mmproj, batches] of [
    ["llava (mlp)", () => tinyModel(), () => tinyMmproj(), [64, 5]],
    ["Gemma 3 (non-causal)", () => tinyModel(), () => tinyGemma3Mmproj(), [4, 64]],
    ["llava images under Qwen2-VL text positions (M-RoPE, 1-D)", () => tinyQwen2vlModel(), () => tinyMmproj(), [64, 5]],
    ["Qwen2.5-VL (M-RoPE, 2-D positions, window attention)", () => tinyQwen2vlModel(), () => tinyQwen25vlMmproj(), [64, 4]],
  ] as const) {
    it(name, async () => {
      const model = await nativeAddon().loadModel(modelFile(), { gpuLayers: 0 });
      const projector = await loadProjector(mmproj(), model, loadLlama("cpu"), { threads: 1, warmup: false });
      try {
        const { chunks } = await projector.tokenize("<__media__>", [makePng(64, 64, gradient)]);
        const img = imageChunk(chunks);
        const e = await projector.encode(img.chunk);
        if (name.includes("1-D")) assert.deepEqual([e.mrope, e.nTokens, e.nPos], [true, 16, 16], "max(nx = 16, ny = 1) positions");
        if (name.includes("2-D")) assert.deepEqual([e.mrope, e.nTokens, e.nPos], [true, tinyQwenImageTokens(64), 3], "a 3×3 grid advances 3 positions");
        for (const n of batches) {
          const ours = mtmdAddon().evalImageForTest(model, e.embd, before(), afterTokens(), n);
          const theirs = mtmdAddon().evalImageReferenceForTest(model, projector, img.chunk, before(), afterTokens(), n);
          assert.ok(maxDiff(ours, theirs) === 0, `batch ${n}: bit for bit the same logits (max difference ${maxDiff(ours, theirs)})`);
        }
      } finally {
        projector.dispose();
        model.dispose();
      }
    });
  }
});

describe("a Gemma-3-style projector (pooled patches, non-causal image attention)", () => {
  let model: NativeModel;
  let projector: NativeProjector;
  before(async () => {
    model = await nativeAddon().loadModel(tinyModel(), { gpuLayers: 0 });
    projector = await loadProjector(tinyGemma3Mmproj(), model, loadLlama("cpu"), { threads: 1 });
  });
  after(() => {
    projector.dispose();
    model.dispose();
  });

  it("wraps the image in the model's image markers and gives 4 tokens evaluated non-causally", async () => {
    assert.equal(projector.info().nonCausal, true);
    const { chunks } = await projector.tokenize("<__media__>", [makePng(64, 64, gradient)]);
    assert.deepEqual(chunks.map((c) => c.kind), ["text", "image", "text"], "<start_of_image>, the image, <end_of_image>");
    const img = chunks[1]!;
    assert.ok(img.kind === "image");
    assert.equal(img.nTokens, tinyMmprojImageTokens({ projector: "gemma3" }));
    const e = await projector.encode(img.chunk);
    assert.deepEqual([e.nTokens, e.nEmbd, e.nonCausal, e.mrope], [4, TEXT_EMBD, true, false]);
    const before = model.tokenize("<|im_start|>user\n", true);
    const afterTokens = model.tokenize(" what?<|im_end|>", true);
    const whole = mtmdAddon().evalImageForTest(model, e.embd, before, afterTokens, 4);
    assert.equal(whole.length, model.info().vocabSize);
    assert.throws(
      () => mtmdAddon().evalImageForTest(model, e.embd, before, afterTokens, 3),
      /^Error: The image takes 4 tokens but a batch holds 3; this model needs a whole image in one batch \(raise the batch size\)\.$/,
    );
    assert.deepEqual(mtmdAddon().evalImageForTest(model, e.embd, before, afterTokens, 4), whole, "causal attention is back on after the image");
  });
});

describe("a SmolVLM-style projector (idefics3: tiles and an overview)", () => {
  it("turns one picture into five image chunks between the model's marker tokens, all with the picture's id", async () => {
    const model = await nativeAddon().loadModel(tinyIdefics3Model(), { gpuLayers: 0 });
    const projector = await loadProjector(tinyIdefics3Mmproj(), model, loadLlama("cpu"), { threads: 1 });
    try {
      const png = makePng(100, 60, gradient);
      const { chunks, images } = await projector.tokenize("<__media__>", [png]);
      assert.deepEqual(chunks.map((c) => c.kind), ["text", "image", "text", "image", "text", "image", "text", "image", "text", "image", "text"]);
      const tiles = chunks.flatMap((c) => (c.kind === "image" ? [c] : []));
      assert.deepEqual(tiles.map((c) => c.nTokens), [4, 4, 4, 4, 4]);
      assert.ok(tiles.every((c) => c.id === images[0]!.id), "every tile carries the picture's id");
      const marker = model.tokenize("<fake_token_around_image>", true);
      assert.equal(marker.length, 1);
      const firstText = chunks[0]!;
      assert.ok(firstText.kind === "text" && firstText.tokens[0] === marker[0], "a tile opens with <fake_token_around_image>");
      for (const tile of tiles) assert.equal((await projector.encode(tile.chunk)).nTokens, 4);
    } finally {
      projector.dispose();
      model.dispose();
    }
  });

  it("refuses a model whose vocabulary lacks those marker tokens, instead of handing llama.cpp token -1", async () => {
    const model = await nativeAddon().loadModel(tinyModel(), { gpuLayers: 0 });
    const projector = await loadProjector(tinyIdefics3Mmproj(), model, loadLlama("cpu"), { threads: 1 });
    try {
      await failsWith(projector.tokenize("<__media__>", [makePng(64, 64, gradient)]), /^The projector's image marker tokens are not all in this model's vocabulary; use the mmproj file made for this model\.$/);
    } finally {
      projector.dispose();
      model.dispose();
    }
  });
});
