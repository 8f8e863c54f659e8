// The native engine itself: how llama.cpp is loaded, the KV operations and state files the daemon
// relies on, and hostile inputs that must never reach llama.cpp.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { ModelHost } from "@nanollm/daemon/dist/engine/ModelHost.js";
import type { Segment } from "@nanollm/daemon/dist/engine/types.js";
import { tempDir, tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { checkerboard, gradient, makePng } from "./helpers/images.js";
import { nanollm } from "./helpers/daemon.js";

const run = promisify(execFile);
const NATIVE = fileURLToPath(new URL("../../daemon/dist/engine/native.js", import.meta.url));
const PREBUILT = fileURLToPath(new URL("../../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/", import.meta.url));

/** Runs `body` (an ES module's text, with `native` imported) in a fresh Node process: llama.cpp loads once per process. */
async function inFreshProcess(body: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", `import * as native from ${JSON.stringify(NATIVE)};\n${body}`], { env: { ...process.env, ...env } });
  return stdout.trim();
}

const OWN_CPU = fileURLToPath(new URL("../../daemon/native/build-cpu/lib/", import.meta.url));
const LOAD_CPU = `const l = native.loadLlama("cpu"); console.log(JSON.stringify({ cpuBackend: l.variant.cpuBackend, ownCpu: l.ownCpu }));`;

describe("loading llama.cpp by path", () => {
  it("loads the prebuilt CPU variant from node-llama-cpp's package", async () => {
    const out = JSON.parse(await inFreshProcess(`const l = native.loadLlama("cpu"); console.log(JSON.stringify({ ...l.variant, gpu: l.gpu, threadpool: l.threadpool }));`));
    assert.equal(out.backend, "cpu");
    assert.equal(out.binary, "prebuilt");
    assert.equal(path.resolve(out.dir), path.resolve(PREBUILT));
    assert.match(path.basename(out.llama), /^libllama\.v[\d.]+\.so$/);
    assert.equal(out.gpu, false);
    assert.equal(out.threadpool, true, "the CPU backend offers a persistent threadpool");
  });

  it("uses the CPU backend npm ci built here (cpu.mjs) in place of the prebuilt variant's", async (t) => {
    const built = fs.existsSync(OWN_CPU) ? fs.readdirSync(OWN_CPU).filter((f) => /^libggml-cpu-.+\.so$/.test(f)) : [];
    if (built.length === 0) {
      const cmake = await run("cmake", ["--version"]).then(() => true, () => false);
      if (!cmake) return t.skip("cmake is not installed, so npm ci built no CPU backend here (the prebuilt one is used)");
      if (!fs.readdirSync(PREBUILT).some((f) => /^libggml-cpu-.+\.so$/.test(f))) return t.skip("the prebuilt CPU backend comes in no variants here, so none is built");
      assert.fail(`npm ci built no CPU backend into ${OWN_CPU} although cmake is installed`);
    }
    const out = JSON.parse(await inFreshProcess(LOAD_CPU));
    assert.equal(out.cpuBackend, path.join(OWN_CPU, built[0]!));
    assert.equal(out.ownCpu, true);
    // Prebuilt variants are named the same way: it is the one ggml itself would pick on this CPU.
    assert.ok(fs.existsSync(path.join(PREBUILT, built[0]!)), `${built[0]} is one of the prebuilt variants`);
  });

  it("keeps the prebuilt CPU backend when asked, when the one named is another variant than ggml chose, or when it cannot load", async () => {
    assert.deepEqual(JSON.parse(await inFreshProcess(LOAD_CPU, { NANOLLM_CPU_BACKEND: "prebuilt" })), { ownCpu: false });
    // The variant ggml picks here is the one npm ci built (named alike); any other prebuilt one is "built for another CPU".
    const chosen = fs.existsSync(OWN_CPU) ? fs.readdirSync(OWN_CPU).find((f) => /^libggml-cpu-.+\.so$/.test(f)) : undefined;
    // A baseline variant, which every x86-64 CPU runs (its own score would accept it).
    const other = ["x64", "sse42"].map((v) => `libggml-cpu-${v}.so`).find((f) => f !== chosen && fs.existsSync(path.join(PREBUILT, f)));
    if (chosen && other) {
      const out = JSON.parse(await inFreshProcess(LOAD_CPU, { NANOLLM_CPU_BACKEND: path.join(PREBUILT, other) }));
      assert.deepEqual(out, { cpuBackend: path.join(PREBUILT, other), ownCpu: false }, `${other} is not the variant ggml chose (${chosen})`);
    }
    const broken = path.join(tempDir("cpu-backend"), chosen ?? "libggml-cpu-zen4.so");
    fs.writeFileSync(broken, "not a shared library");
    const body = `${LOAD_CPU}
      const m = await native.nativeAddon().loadModel(${JSON.stringify(tinyModel())}, { gpuLayers: 0 });
      console.log(m.info().vocabSize > 0 ? "model loaded" : "no vocabulary"); m.dispose();`;
    const [first, second] = (await inFreshProcess(body, { NANOLLM_CPU_BACKEND: broken })).split("\n");
    assert.deepEqual(JSON.parse(first!), { cpuBackend: broken, ownCpu: false });
    assert.equal(second, "model loaded", "the prebuilt backend runs the model");
  });

  it("refuses a missing library with one sentence naming it", async () => {
    const out = await inFreshProcess(`try { native.nativeAddon().loadLibrary("/nonexistent/libllama.so", "/nonexistent/libggml.so", "/nonexistent"); } catch (e) { console.log(e.message); }`);
    assert.match(out, /^Could not load \/nonexistent\/libggml\.so \(.*\)\.$/);
    assert.equal(out.split("\n").length, 1);
  });

  it("refuses a library that is not llama.cpp's (a missing function) with one sentence", async () => {
    const base = path.join(PREBUILT, "libggml-base.so");
    const out = await inFreshProcess(`try { native.nativeAddon().loadLibrary(${JSON.stringify(base)}, ${JSON.stringify(path.join(PREBUILT, "libggml.v0.5.0.so"))}, ${JSON.stringify(PREBUILT)}); } catch (e) { console.log(e.message); }`);
    assert.match(out, /^llama_backend_init is missing from .*libggml-base\.so; the library does not match the llama\.cpp headers this addon was built with\.$/);
  });

  it("serve --gpu cuda without CUDA says so in one line, no stack trace", async () => {
    const r = await nanollm(["serve", "--model", tinyModel(), "--gpu", "cuda", "--listen", "127.0.0.1:0", "--ephemeral"]);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split("\n").filter((l) => !/^nanollm|^\s*$/.test(l));
    assert.match(r.stderr, /cuda/i);
    assert.match(r.stderr, /--gpu cpu/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
    assert.ok(lines.length <= 2, `one sentence, got:\n${r.stderr}`);
  });
});

describe("the engine on a real model", () => {
  let host: ModelHost;
  let swap: string;
  const logs: string[] = [];
  before(async () => {
    swap = tempDir("engine");
    host = await ModelHost.load({ modelPath: tinyModel(), gpu: "cpu", threads: 1, batchThreads: 1, parallel: 1, ctx: 512, kvCacheType: "f16", maxQueue: 4, swapDir: swap, log: (l) => logs.push(l) });
  });
  after(async () => {
    await host.dispose();
    fs.rmSync(swap, { recursive: true, force: true });
  });

  const prompt = (text: string) => host.tokenize([{ kind: "text", text }]);

  async function greedy(owner: string, tokens: number[], n = 12) {
    const lease = await host.pool.acquire(owner, new AbortController().signal);
    try {
      const stats = await lease.prepare(tokens);
      const out: number[] = [];
      const gen = lease.decode(tokens, { maxNewTokens: n, minNewTokens: 0, doSample: false, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 }, { signal: new AbortController().signal, lockstep: false });
      for await (const t of gen) {
        out.push(t);
        if (out.length >= n) break;
      }
      return { out, stats };
    } finally {
      lease.release();
    }
  }

  it("a parked cache comes back bit for bit: the same reply, no re-prefill", async () => {
    const tokens = prompt("Once upon a time there was a small robot who");
    const first = await greedy("a", tokens);
    await greedy("b", prompt("Something else entirely"));
    const again = await greedy("a", tokens);
    assert.deepEqual(again.out, first.out);
    assert.equal(again.stats.reusedTokens, tokens.length - 1, "restored from the state file");
  });

  for (const [name, tamper] of [
    ["truncated", (f: string) => fs.truncateSync(f, Math.floor(fs.statSync(f).size / 2))],
    ["flipped payload bits", (f: string) => {
      const fd = fs.openSync(f, "r+");
      const b = Buffer.alloc(1);
      const at = fs.statSync(f).size - 100;
      fs.readSync(fd, b, 0, 1, at);
      b[0] = b[0]! ^ 0x40;
      fs.writeSync(fd, b, 0, 1, at);
      fs.closeSync(fd);
    }],
    ["a huge token count in the header", (f: string) => {
      const fd = fs.openSync(f, "r+");
      const b = Buffer.alloc(4);
      b.writeUInt32LE(0x7fffffff);
      fs.writeSync(fd, b, 0, 4, 8);
      fs.closeSync(fd);
    }],
    ["its description deleted", (f: string) => fs.rmSync(`${f}.json`)],
  ] as const) {
    it(`a parked cache ${name} is discarded and re-prefilled: the same reply`, async () => {
      const tokens = prompt(`A story about ${name}, told slowly`);
      const first = await greedy("c", tokens);
      await greedy("d", prompt("Another conversation"));
      const file = fs.readdirSync(path.join(swap, "tiny-chatml")).find((f) => f.startsWith("c.kv") && !f.endsWith(".json"));
      assert.ok(file, "c's cache was parked");
      tamper(path.join(swap, "tiny-chatml", file));
      logs.length = 0;
      const again = await greedy("c", tokens);
      assert.equal(again.stats.reusedTokens, 0, "nothing loaded from the tampered file");
      assert.deepEqual(again.out, first.out, "re-prefill gives the same greedy reply");
      if (name !== "its description deleted") assert.ok(logs.some((l) => /discarded the KV cache of session c/.test(l)), logs.join("\n"));
    });
  }

  it("refuses a grammar nested 20,000 deep before llama.cpp parses it", () => {
    const deep = `root ::= ${"(".repeat(20000)}"a"${")".repeat(20000)}`;
    assert.throws(() => host.grammar(deep), (e: Error) => /nest/i.test(e.message) && !/\n/.test(e.message));
  });

  it("refuses GBNF llama.cpp cannot parse with llama.cpp's reason", () => {
    assert.throws(() => host.grammar('root ::= "\\x"'), /The grammar is not valid GBNF \(.+\); fix it and retry\.$/);
  });

  it("a grammar rules the reply", async () => {
    const tokens = prompt("Say something:");
    const lease = await host.pool.acquire("g", new AbortController().signal);
    try {
      await lease.prepare(tokens);
      const grammar = host.grammar('root ::= "yes" | "no"');
      const out: number[] = [];
      for await (const t of lease.decode(tokens, { maxNewTokens: 8, minNewTokens: 0, doSample: false, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 }, { signal: new AbortController().signal, lockstep: false, grammar })) {
        if (host.isEog(t)) break;
        out.push(t);
      }
      assert.match(host.detokenize(out), /^(yes|no)$/);
    } finally {
      lease.release();
    }
  });
});

describe("images in a sequence's KV history", () => {
  let host: ModelHost;
  let swap: string;
  const greedySampling = { maxNewTokens: 12, minNewTokens: 0, doSample: false, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 };
  const pngA = makePng(64, 64, gradient);
  const pngB = makePng(64, 64, checkerboard);
  before(async () => {
    swap = tempDir("engine-images");
    host = await ModelHost.load({ modelPath: tinyModel(), mmproj: tinyMmproj(), gpu: "cpu", threads: 1, batchThreads: 1, parallel: 2, ctx: 512, kvCacheType: "f16", maxQueue: 4, swapDir: swap, log: () => {} });
  });
  after(async () => {
    await host.dispose();
    fs.rmSync(swap, { recursive: true, force: true });
  });

  async function prompt(image: Buffer | undefined, after = " What is in the picture?"): Promise<number[]> {
    const segs: Segment[] = [{ kind: "text", text: "Look at this:" }];
    if (image) segs.push({ kind: "image", image: await host.images!.read(image), text: "" });
    segs.push({ kind: "text", text: after });
    return host.tokenize(segs);
  }

  async function reply(owner: string, tokens: number[]) {
    const lease = await host.pool.acquire(owner, new AbortController().signal);
    try {
      const stats = await lease.prepare(tokens);
      const out: number[] = [];
      for await (const t of lease.decode(tokens, greedySampling, { signal: new AbortController().signal, lockstep: false })) {
        out.push(t);
        if (out.length >= 12) break;
      }
      return { out, stats };
    } finally {
      lease.release();
    }
  }

  it("an image takes its place in the prompt as placeholder positions", async () => {
    const tokens = await prompt(pngA);
    const placeholders = tokens.filter((t) => t < 0);
    assert.equal(placeholders.length, 16, "64×64 at patch 16: 16 positions");
    assert.equal(new Set(placeholders).size, 1);
    assert.deepEqual((await prompt(pngA)).filter((t) => t < 0), placeholders, "the same image, the same placeholders");
    assert.notDeepEqual((await prompt(pngB)).filter((t) => t < 0), placeholders);
  });

  it("the image changes the greedy reply; the same image in a fresh sequence gives the same reply", async () => {
    const a = await reply("a1", await prompt(pngA));
    const b = await reply("b1", await prompt(pngB));
    const none = await reply("n1", await prompt(undefined));
    const again = await reply("a2", await prompt(pngA));
    assert.notDeepEqual(a.out, b.out, "another image, another reply");
    assert.notDeepEqual(a.out, none.out, "no image, another reply");
    assert.deepEqual(again.out, a.out);
  });

  it("the turn after an image evaluates only its new text and equals a fresh replay", async () => {
    const first = await prompt(pngA);
    const r1 = await reply("t", first);
    const images = host.loopStats().images;
    const second = [...first, ...r1.out, ...host.tokenizeText(" And the colours?", true)];
    const r2 = await reply("t", second);
    assert.equal(r2.stats.reusedTokens, first.length + r1.out.length - 1, "the image and the first reply stay in the cache");
    assert.equal(host.loopStats().images, images, "the image was not evaluated again");
    const fresh = await reply("t-fresh", second);
    assert.equal(fresh.stats.reusedTokens, 0);
    assert.deepEqual(r2.out, fresh.out, "the cached turn equals a fresh session replaying the history with the image");
  });

  it("a parked sequence with an image comes back exact", async () => {
    const tokens = await prompt(pngB, " Describe it.");
    const first = await reply("p", tokens);
    // Two sequences: two other owners push p's cache out to its state file.
    await reply("q", await prompt(undefined, " one"));
    await reply("r", await prompt(undefined, " two"));
    const images = host.loopStats().images;
    const back = await reply("p", tokens);
    assert.equal(back.stats.reusedTokens, tokens.length - 1, "restored from the state file, image cells included");
    assert.equal(host.loopStats().images, images);
    assert.deepEqual(back.out, first.out);
  });

  it("a prompt whose new part starts with an image replies in full and equals a fresh sequence", { timeout: 30_000 }, async () => {
    // The cache holds exactly the text before the image (as after a wrap that keeps BOS and the
    // user prefix): the reply's job starts at the image. Its offset once stayed with the job after
    // the first sampled token, which was then read as that image: the job hung, its record corrupt.
    const lead = host.tokenize([{ kind: "text", text: "Look at this:" }]);
    const tokens = await prompt(pngB, " What now?");
    assert.deepEqual(tokens.slice(0, lead.length), lead);
    const lease = await host.pool.acquire("image-first", new AbortController().signal);
    try {
      await lease.sync(lead, new AbortController().signal);
    } finally {
      lease.release();
    }
    const r = await reply("image-first", tokens);
    assert.equal(r.stats.reusedTokens, lead.length, "the new part starts with the image");
    assert.equal(r.out.length, 12);
    assert.deepEqual(r.out, (await reply("image-first-fresh", tokens)).out);
  });

  it("bad image bytes are one sentence; the model keeps serving", async () => {
    await assert.rejects(host.images!.read(Buffer.from("not an image at all")), (e: Error) => /could not be (read|decoded)/.test(e.message) && !/\n/.test(e.message));
    assert.ok((await reply("after-bad", await prompt(pngA))).out.length > 0);
  });
});
