// mmproj files checked before clip.cpp sees them (it crashes the process on a missing tensor), and
// the projector found beside a model. Split from mtmd.test.ts (the library and the projector).
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { NanoError } from "@nanollm/shared";
import { checkMmproj, mmprojBeside } from "@nanollm/daemon/dist/engine/mmproj.js";
import { loadLlama, nativeAddon } from "@nanollm/daemon/dist/engine/native.js";
import { imageLibraryFor, loadProjector, mtmdAddon } from "@nanollm/daemon/dist/engine/projector.js";
import { buildTinyMmproj, tinyMmprojImageTokens, tinyQwenImageTokens } from "./gguf/makeTinyMmproj.js";
import { oneSentence } from "./helpers/assertions.js";
import { tempDir, tinyIdefics3Model, tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { gradient, makePng } from "./helpers/images.js";

const run = promisify(execFile);
const DIST = fileURLToPath(new URL("../../daemon/dist/engine/", import.meta.url));
const TEST_DIST = fileURLToPath(new URL("./", import.meta.url));

describe("mmproj files are checked before clip.cpp sees them", () => {
  const { tensors } = buildTinyMmproj();
  let dir: string;
  before(() => {
    dir = tempDir("mmproj");
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const omitted = (item: string, projector: "mlp" | "gemma3" | "qwen2.5vl_merger" | "idefics3" = "mlp") => {
    const file = path.join(dir, `omit-${projector}-${item}.gguf`);
    if (!fs.existsSync(file)) fs.writeFileSync(file, buildTinyMmproj({ projector, omit: [item] }).bytes);
    return file;
  };

  it("the tiny mmproj passes", () => {
    const h = checkMmproj(tinyMmproj());
    assert.equal(h.keys.get("clip.projector_type"), "mlp");
    assert.equal(h.tensors.size, tensors.length);
  });

  for (const item of ["clip.projector_type", "clip.vision.patch_size", "v.patch_embd.weight", "v.blk.1.attn_q.weight", "mm.2.bias"]) {
    it(`without ${item}: one sentence naming it (INVALID_ARGUMENT)`, () => {
      assert.throws(() => checkMmproj(omitted(item)), (e: unknown) => {
        assert.ok(e instanceof NanoError && e.code === "INVALID_ARGUMENT");
        assert.ok(oneSentence(e), e.message);
        assert.ok(e.message.includes(` ${item} `), e.message);
        assert.match(e.message, /download or convert the model's mmproj file again\.$/);
        return true;
      });
    });
  }

  // One fresh process loads every single-omission file through loadProjector (check, then clip):
  // it survives only if no file clip.cpp would crash on reaches it.
  for (const projector of ["mlp", "gemma3", "qwen2.5vl_merger", "idefics3"] as const) {
    it(`${projector}: each required key or tensor left out is refused before clip.cpp; everything optional loads and encodes`, async () => {
      const built = buildTinyMmproj({ projector });
      const all = [...built.keys, ...built.tensors];
      const own = {
        mlp: /^(v\.patch_embd\.weight|v\.position_embd\.weight|mm\.[02]\.(weight|bias))$/,
        gemma3: /^(v\.patch_embd\.weight|mm\.input_projection\.weight|mm\.soft_emb_norm\.weight)$/,
        "qwen2.5vl_merger": /^(clip\.vision\.n_wa_pattern|v\.patch_embd\.weight(\.1)?|mm\.[02]\.(weight|bias)|v\.blk\.\d+\.attn_[qkv]\.bias)$/,
        idefics3: /^(clip\.vision\.projector\.scale_factor|v\.patch_embd\.weight|mm\.model\.fc\.weight)$/,
      }[projector];
      const needed = (item: string) =>
        /^clip\.(has_vision_encoder|projector_type|vision\.(image_size|patch_size|embedding_length|feed_forward_length|block_count|attention\.head_count|attention\.layer_norm_epsilon|projection_dim|image_mean|image_std))$/.test(item) ||
        /^v\.blk\.\d+\.(attn_[qkv]|attn_out|ffn_up|ffn_down)\.weight$/.test(item) ||
        own.test(item);
      const files = Object.fromEntries(all.map((item) => [item, omitted(item, projector)]));
      // idefics3: the first of its tiles.
      const tokens = projector === "qwen2.5vl_merger" ? tinyQwenImageTokens(64) : projector === "idefics3" ? 4 : tinyMmprojImageTokens({ projector });
      const textModel = projector === "idefics3" ? tinyIdefics3Model() : tinyModel();
      const script = `
        import { loadLlama, nativeAddon } from ${JSON.stringify(path.join(DIST, "native.js"))};
        import { loadProjector } from ${JSON.stringify(path.join(DIST, "projector.js"))};
        import { makePng, gradient } from ${JSON.stringify(path.join(TEST_DIST, "helpers", "images.js"))};
        const lib = loadLlama("cpu");
        const model = await nativeAddon().loadModel(${JSON.stringify(textModel)}, { gpuLayers: 0 });
        const out = {};
        for (const [item, file] of Object.entries(${JSON.stringify(files)})) {
          try {
            // Without the throwaway-process probe: the static checks alone must keep this process alive.
            const p = await loadProjector(file, model, lib, { threads: 1, warmup: false, probe: false });
            const { chunks } = await p.tokenize("<__media__>", [makePng(64, 64, gradient)]);
            out[item] = "encoded " + (await p.encode(chunks.find((c) => c.kind === "image").chunk)).nTokens;
            p.dispose();
          } catch (e) { out[item] = (e.code ?? "") + " " + e.message; }
        }
        console.log(JSON.stringify(out));`;
      const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { maxBuffer: 1 << 24 });
      const out = JSON.parse(stdout) as Record<string, string>;
      for (const item of all) {
        const esc = item.replace(/\./g, "\\.");
        if (needed(item)) assert.match(out[item]!, new RegExp(`^INVALID_ARGUMENT The projector .* (lacks the (key|tensor) ${esc} |has ${esc} with fewer)`), `${item}: ${out[item]}`);
        // Without the scale factor, gemma3 pools 4×4 patches: one token.
        else assert.equal(out[item], `encoded ${item === "clip.vision.projector.scale_factor" ? 1 : tokens}`, `${item} is optional: ${out[item]}`);
      }
    });
  }

  it("the check is what keeps the process alive: clip.cpp itself crashes on a missing patch embedding", async () => {
    const script = `
      import { loadLlama, nativeAddon } from ${JSON.stringify(path.join(DIST, "native.js"))};
      import { imageLibraryFor, mtmdAddon } from ${JSON.stringify(path.join(DIST, "projector.js"))};
      const lib = loadLlama("cpu");
      const model = await nativeAddon().loadModel(${JSON.stringify(tinyModel())}, { gpuLayers: 0 });
      mtmdAddon().loadMtmd(imageLibraryFor(lib.variant));
      await mtmdAddon().loadProjector(${JSON.stringify(omitted("v.patch_embd.weight"))}, model, { gpu: false, threads: 1 });
      console.log("survived");`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    // SIGABRT under AddressSanitizer (make test-asan), which turns the SEGV into an abort.
    assert.ok(r.signal === "SIGSEGV" || r.signal === "SIGABRT", `expected clip.cpp to crash, got status ${r.status}: ${r.stdout}${r.stderr.slice(-500)}`);
  });

  it("refuses a tensor clip.cpp asserts against (a Qwen-VL patch bias) with one sentence", () => {
    const file = path.join(dir, "qwen-with-patch-bias.gguf");
    fs.writeFileSync(file, buildTinyMmproj({ projector: "qwen2.5vl_merger", extraTensors: ["v.patch_embd.bias"] }).bytes);
    assert.throws(() => checkMmproj(file), /has the tensor v\.patch_embd\.bias, which clip\.cpp does not accept for projector type qwen2\.5vl_merger; download or convert/);
  });

  it("a malformed file of a type the checks do not know crashes only a throwaway process: one sentence, the daemon lives", async () => {
    // An LFM2 projector without its position embedding passes the generic checks; clip.cpp
    // dereferences the missing tensor while building its graph.
    const file = path.join(dir, "lfm2-without-position-embd.gguf");
    const mm = ["mm.1.weight", "mm.1.bias", "mm.2.weight", "mm.2.bias"];
    fs.writeFileSync(file, buildTinyMmproj({ projector: "gemma3", typeName: "lfm2", omit: ["v.position_embd.weight"], extraTensors: mm }).bytes);
    assert.doesNotThrow(() => checkMmproj(file));
    loadLlama("cpu");
    const model = await nativeAddon().loadModel(tinyModel(), { gpuLayers: 0 });
    try {
      await assert.rejects(loadProjector(file, model, loadLlama("cpu"), { threads: 1 }), (e: unknown) => {
        assert.ok(e instanceof NanoError && e.code === "INVALID_ARGUMENT" && oneSentence(e), String(e));
        assert.match(e.message, /^The projector .*lfm2-without-position-embd\.gguf crashed \(SIG(SEGV|ABRT)\) when llama\.cpp's image loader read it in a test process, so it was not loaded; /);
        return true;
      });
      // Misshapen tensors (1-D where matrices belong) trip a ggml assertion instead: caught the same way.
      fs.writeFileSync(file, buildTinyMmproj({ projector: "gemma3", typeName: "lfm2", extraTensors: mm }).bytes);
      await assert.rejects(loadProjector(file, model, loadLlama("cpu"), { threads: 1 }), /crashed \(SIGABRT\)/);
      // A good file passes the probe and loads.
      const p = await loadProjector(tinyMmproj(), model, loadLlama("cpu"), { threads: 1 });
      p.dispose();
    } finally {
      model.dispose();
    }
  });

  it("refuses what is not a projector with one sentence", () => {
    const notGguf = path.join(dir, "notes.gguf");
    fs.writeFileSync(notGguf, "hello, not a model");
    assert.throws(() => checkMmproj(notGguf), /notes\.gguf is not a readable GGUF file \(it does not start with GGUF\); pass the model's mmproj \.gguf file\.$/);
    assert.throws(() => checkMmproj(tinyModel()), /tiny-chatml\.gguf is a llama model, not an image projector; pass the model's mmproj file/);
    assert.throws(() => checkMmproj(path.join(dir, "missing.gguf")), (e: unknown) => e instanceof NanoError && e.code === "NOT_FOUND" && oneSentence(e));
    const truncated = path.join(dir, "truncated.gguf");
    fs.writeFileSync(truncated, fs.readFileSync(tinyMmproj()).subarray(0, 200));
    assert.throws(() => checkMmproj(truncated), /is not a readable GGUF file \(the file ends inside its header\)/);
  });
});

describe("the projector beside a model", () => {
  it("is the only mmproj*.gguf in the model's folder, or the one that shares the model's name", () => {
    const dir = tempDir("beside");
    try {
      const touch = (...names: string[]) => names.forEach((n) => fs.writeFileSync(path.join(dir, n), ""));
      const model = path.join(dir, "gemma-3-4b-it-Q4_K_M.gguf");
      touch("gemma-3-4b-it-Q4_K_M.gguf", "notes.txt");
      assert.equal(mmprojBeside(model), undefined);
      touch("mmproj-model-f16.gguf");
      assert.equal(mmprojBeside(model), path.join(dir, "mmproj-model-f16.gguf"), "the only one");
      touch("mmproj-gemma-3-4b-it-f16.gguf", "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf");
      assert.equal(mmprojBeside(model), path.join(dir, "mmproj-gemma-3-4b-it-f16.gguf"), "the one sharing the name");
      touch("mmproj-gemma-3-4b-it-Q8_0.gguf");
      assert.equal(mmprojBeside(model), undefined, "two equally good: none is guessed");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
