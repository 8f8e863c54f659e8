import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { inProcessDaemon, nanollm, spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyMmproj, tinyModel, toolEagerModel } from "./helpers/fixtures.js";
import { gradient, makePng } from "./helpers/images.js";
import { rejectsWith } from "./helpers/assertions.js";
import { httpBase, postJson } from "./helpers/http.js";
import { waitFor } from "./helpers/poll.js";

/** A models folder holding alpha (seed 1) and beta (seed 2): two different tiny models. */
function modelsFolder(): string {
  const dir = tempDir("models");
  fs.copyFileSync(tinyModel(), path.join(dir, "alpha.gguf"));
  fs.copyFileSync(tinyModel("tiny-seed2", 2), path.join(dir, "beta.gguf"));
  return dir;
}

const PROMPTS = ["Hello there", "Tell me more"];

/** A turn that also collects the loading events the stream carries before its text. */
async function turnWithLoading(client: NanoClient, sessionId: string, text: string) {
  const loading: number[] = [];
  let reply = "";
  let reused = 0;
  for await (const ev of client.turn(sessionId, text, { maxNewTokens: 16 })) {
    if (ev.kind?.$case === "loading") loading.push(ev.kind.loading.progress);
    if (ev.kind?.$case === "end") {
      reply = ev.kind.end.reply;
      reused = ev.kind.end.stats?.reusedTokens ?? 0;
    }
  }
  return { reply, loading, reused };
}

/** The replies of a single-model daemon that never unloads, for one session and these prompts. */
async function reference(file: string, prompts: string[]): Promise<string[]> {
  const d = await inProcessDaemon(file, { daemon: { keepAliveMs: -1 } });
  try {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const out: string[] = [];
    for (const p of prompts) out.push((await turn(d.client, s.sessionId, p, 16)).text);
    return out;
  } finally {
    await d.stop();
  }
}

const loadedNames = async (client: NanoClient) => (await client.listModels()).map((m) => m.name).sort();

describe("several models, memory budget and keep-alive", () => {
  let dir: string;
  let expected: { alpha: string[]; beta: string[] };
  before(async () => {
    dir = modelsFolder();
    expected = { alpha: await reference(path.join(dir, "alpha.gguf"), PROMPTS), beta: await reference(path.join(dir, "beta.gguf"), PROMPTS) };
    assert.notDeepEqual(expected.alpha, expected.beta, "the two fixtures answer differently");
  });

  it("two models loaded at once: each session on its own, replies equal to single-model daemons", async () => {
    const d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, keepAliveMs: -1 } });
    try {
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      const b = await d.client.createSession({ model: "beta", chatTemplate: "chat-ml" });
      assert.equal(b.model, "beta");
      assert.deepEqual(await loadedNames(d.client), ["alpha", "beta"]);
      for (const [i, p] of PROMPTS.entries()) {
        // Both models generate at the same time.
        const [ra, rb] = await Promise.all([turn(d.client, a.sessionId, p, 16), turn(d.client, b.sessionId, p, 16)]);
        assert.equal(ra.text, expected.alpha[i]);
        assert.equal(rb.text, expected.beta[i]);
      }
      const local = await d.client.listLocalModels();
      assert.deepEqual(local.models.map((m) => [m.name, m.architecture, m.contextLength, m.images, m.loaded?.sessionCount]), [
        ["alpha", "llama", 32768, false, 1],
        ["beta", "llama", 32768, false, 1],
      ]);
      assert.ok(local.models.every((m) => m.quantization !== "" && m.quantization !== "unknown"), JSON.stringify(local.models.map((m) => m.quantization)));
    } finally {
      await d.stop();
    }
  });

  it("the budget unloads the least recently used idle model, and its sessions come back exactly (greedy replies equal a never-unloaded daemon's)", async () => {
    // What one model takes, measured by a daemon that loads it: the budget holds one, not two.
    const probe = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { keepAliveMs: -1 } });
    const one = Number((await probe.client.listModels())[0]!.memoryBytes);
    await probe.stop();
    const d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, keepAliveMs: -1, memoryBudget: Math.floor(one * 1.5) } });
    try {
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      assert.equal((await turnWithLoading(d.client, a.sessionId, PROMPTS[0]!)).reply, expected.alpha[0]);
      // beta needs the room alpha takes: alpha, idle, is unloaded.
      const b = await d.client.createSession({ model: "beta", chatTemplate: "chat-ml" });
      assert.deepEqual(await loadedNames(d.client), ["beta"]);
      assert.ok(d.logLines.includes("unloading alpha (idle the longest) to make room for beta"), d.logLines.join("\n"));
      assert.equal((await turnWithLoading(d.client, b.sessionId, PROMPTS[0]!)).reply, expected.beta[0]);
      // alpha's session loads it again (beta goes), with progress on its stream, and its cache comes back from disk.
      const again = await turnWithLoading(d.client, a.sessionId, PROMPTS[1]!);
      assert.equal(again.reply, expected.alpha[1]);
      assert.equal(again.loading[0], 0);
      assert.equal(again.loading.at(-1), 1);
      assert.ok(again.reused > 0, "the parked KV cache was restored, not re-prefilled");
      assert.deepEqual(await loadedNames(d.client), ["alpha"]);
      const back = await turnWithLoading(d.client, b.sessionId, PROMPTS[1]!);
      assert.equal(back.reply, expected.beta[1]);
      assert.ok(back.reused > 0);
    } finally {
      await d.stop();
    }
  });

  it("keep-alive unloads an idle model (the default one too) and the next turn loads it again, with progress events", async () => {
    const d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, keepAliveMs: 1000, metrics: "127.0.0.1:0" } });
    try {
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      const a2 = await d.client.createSession({ chatTemplate: "chat-ml" });
      const first = await turnWithLoading(d.client, a.sessionId, PROMPTS[0]!);
      assert.deepEqual(first.loading, [], "a loaded model needs no load");
      assert.ok(Number((await d.client.listModels())[0]!.unloadsAtMs) > Date.now());
      assert.match(await (await fetch(`http://${d.daemon.metricsAddress}/metrics`)).text(), /^nanollm_model_memory_bytes\{model="alpha"\} [1-9]\d*$/m);
      await waitFor(async () => (await loadedNames(d.client)).length === 0, "the keep-alive unload");
      const scraped = await (await fetch(`http://${d.daemon.metricsAddress}/metrics`)).text();
      assert.match(scraped, /^nanollm_model_memory_bytes\{model="alpha"\} 0$/m);
      // The session is still listed, with its context, while its model is unloaded.
      const listed = (await d.client.listSessions()).find((s) => s.sessionId === a.sessionId);
      assert.ok(listed && listed.contextUsed > 0);
      // Two sessions' turns arrive together: one load serves both.
      const [second, other] = await Promise.all([turnWithLoading(d.client, a.sessionId, PROMPTS[1]!), turnWithLoading(d.client, a2.sessionId, PROMPTS[0]!)]);
      assert.equal(second.reply, expected.alpha[1]);
      assert.equal(other.reply, expected.alpha[0]);
      assert.ok(second.loading.length >= 2 && second.loading[0] === 0 && second.loading.at(-1) === 1, JSON.stringify(second.loading));
      assert.ok(second.reused > 0, "the cache came back from its state file");
      assert.equal(d.logLines.filter((l) => /^loaded alpha in /.test(l)).length, 2, "loaded at start, and once again");
    } finally {
      await d.stop();
    }
  });

  it("a session on another model than the default is restored after a restart, and replies as if never interrupted", async () => {
    const dataDir = tempDir("data");
    const opts = { dataDir, daemon: { modelsDir: dir, keepAliveMs: -1 } };
    const first = await inProcessDaemon(path.join(dir, "alpha.gguf"), opts);
    const b = await first.client.createSession({ model: "beta", chatTemplate: "chat-ml" });
    assert.equal((await turn(first.client, b.sessionId, PROMPTS[0]!, 16)).text, expected.beta[0]);
    await first.stop();
    const second = await inProcessDaemon(path.join(dir, "alpha.gguf"), opts);
    try {
      assert.ok(second.logLines.includes(`restored 1 session from ${path.join(dataDir, "sessions")}`), second.logLines.join("\n"));
      const again = await turnWithLoading(second.client, b.sessionId, PROMPTS[1]!);
      assert.equal(again.reply, expected.beta[1]);
      assert.ok(again.reused > 0, "its cache was parked at shutdown and loaded back");
    } finally {
      await second.stop();
    }
  });

  it("an OpenAI or Ollama request naming a model of the folder loads it", async () => {
    const request = { model: "beta", messages: [{ role: "user", content: PROMPTS[0] }], max_tokens: 16, temperature: 0 };
    const content = (r: { json: Record<string, unknown> }) => (r.json.choices as { message: { content: string } }[])[0]!.message.content;
    const single = await inProcessDaemon(path.join(dir, "beta.gguf"), { http: {}, daemon: { keepAliveMs: -1 } });
    const want = content(await postJson(`${httpBase(single)}/v1/chat/completions`, request));
    await single.stop();
    const d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { http: {}, daemon: { modelsDir: dir, keepAliveMs: -1 } });
    try {
      // Ollama's list shows the folder's models before any is loaded.
      const listed = (await (await fetch(`${httpBase(d)}/api/tags`)).json()) as { models: { name: string; details: { quantization_level: string } }[] };
      assert.deepEqual(listed.models.map((m) => m.name), ["alpha:latest", "beta:latest"]);
      assert.notEqual(listed.models[1]!.details.quantization_level, "");
      const r = await postJson(`${httpBase(d)}/v1/chat/completions`, request);
      assert.equal(r.status, 200, r.text);
      assert.equal(content(r), want);
      assert.deepEqual(await loadedNames(d.client), ["alpha", "beta"]);
      const tags = (await (await fetch(`${httpBase(d)}/api/tags`)).json()) as { models: { name: string; details: { quantization_level: string } }[] };
      assert.deepEqual(tags.models.map((m) => m.name).sort(), ["alpha:latest", "beta:latest"]);
      const unknown = await postJson(`${httpBase(d)}/api/chat`, { model: "gamma", messages: [{ role: "user", content: "hi" }], stream: false });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.json.error, 'No model named "gamma" is loaded; use one of alpha, beta (GET /v1/models or /api/tags lists them).');
    } finally {
      await d.stop();
    }
  });

  it("a turn whose model cannot load again fails with one sentence, and the model still unloads when idle after the next turns", async () => {
    const own = tempDir("models");
    const file = path.join(own, "alpha.gguf");
    fs.copyFileSync(path.join(dir, "alpha.gguf"), file);
    const d = await inProcessDaemon(file, { daemon: { modelsDir: own, keepAliveMs: 1000 } });
    try {
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      await turn(d.client, a.sessionId, PROMPTS[0]!, 4);
      await waitFor(async () => (await loadedNames(d.client)).length === 0, "the keep-alive unload");
      fs.renameSync(file, `${file}.away`);
      await rejectsWith(turn(d.client, a.sessionId, PROMPTS[1]!, 4), "NOT_FOUND", /^Model file \S+alpha\.gguf does not exist; pass the path of a \.gguf file\.$/);
      fs.renameSync(`${file}.away`, file);
      await turn(d.client, a.sessionId, PROMPTS[1]!, 4);
      await waitFor(async () => (await loadedNames(d.client)).length === 0, "the unload after the failed load's turn");
    } finally {
      await d.stop();
    }
  });

  it("keep-alive 0 unloads right after each turn, and a session or HTTP request about to start a turn never finds its model gone", async () => {
    const d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { http: {}, daemon: { modelsDir: dir, keepAliveMs: 0 } });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await postJson(`${httpBase(d)}/v1/chat/completions`, { model: "alpha", messages: [{ role: "user", content: `${PROMPTS[0]} ${i}` }], max_tokens: 4 });
        assert.equal(r.status, 200, r.text);
        await waitFor(async () => (await loadedNames(d.client)).length === 0, "the unload after the HTTP turn");
      }
      const a = await d.client.createSession({ chatTemplate: "chat-ml" });
      for (const [i, p] of PROMPTS.entries()) {
        const r = await turnWithLoading(d.client, a.sessionId, p);
        assert.equal(r.reply, expected.alpha[i]);
        await waitFor(async () => (await loadedNames(d.client)).length === 0, "the unload after the turn");
      }
    } finally {
      await d.stop();
    }
  });
});

const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

describe("an image session across an unload", () => {
  it("the model and its projector load again, the image is read back from the store, and the reply equals a never-unloaded twin's", async () => {
    const dir = tempDir("models");
    fs.mkdirSync(path.join(dir, "vis"));
    fs.copyFileSync(tinyModel(), path.join(dir, "vis", "vis.gguf"));
    fs.copyFileSync(tinyMmproj(), path.join(dir, "vis", "mmproj-vis.gguf"));
    const start = () => inProcessDaemon(path.join(dir, "vis", "vis.gguf"), { parallel: 2, daemon: { modelsDir: dir, keepAliveMs: -1 } });
    const [d, twin] = [await start(), await start()];
    try {
      const image = { name: "gradient.png", data: makePng(64, 64, gradient) };
      const say = async (client: NanoClient, id: string, text: string, images: (typeof image)[] = []) => {
        const ids: number[] = [];
        let reused = 0;
        for await (const ev of client.turn(id, text, { maxNewTokens: 12, minNewTokens: 12 }, undefined, undefined, images)) {
          if (ev.kind?.$case === "text") ids.push(...ev.kind.text.tokenIds);
          if (ev.kind?.$case === "end") reused = ev.kind.end.stats?.reusedTokens ?? 0;
        }
        return { ids, reused };
      };
      const x = await d.client.createSession({ chatTemplate: "chat-ml" });
      const y = await twin.client.createSession({ chatTemplate: "chat-ml" });
      assert.ok((await d.client.listLocalModels()).models.find((m) => m.name === "vis")?.images);
      for (const [c, id] of [[d.client, x.sessionId], [twin.client, y.sessionId]] as const) await say(c, id, "Look at this.", [image]);
      await d.client.unloadModel("vis");
      // Another session's turn loads the model again first: x's cache must come from its state file.
      const other = await d.client.createSession({ chatTemplate: "chat-ml" });
      await say(d.client, other.sessionId, "Hello");
      const after = await say(d.client, x.sessionId, "Tell me more.");
      const never = await say(twin.client, y.sessionId, "Tell me more.");
      assert.deepEqual(after.ids, never.ids);
      assert.equal(after.reused, never.reused, "the image and turn 1 came back from the parked cache");
    } finally {
      await d.stop();
      await twin.stop();
    }
  });
});

describe("model errors", () => {
  let d: TestDaemon;
  let dir: string;
  before(async () => {
    dir = modelsFolder();
    d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, keepAliveMs: -1 } });
  });
  after(() => d.stop());

  it("a model alone past a given budget, an unknown name, other settings for a loaded model, and unloading what is not loaded are one sentence each", async () => {
    await rejectsWith(inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, memoryBudget: 1 << 20 } }), "RESOURCE_EXHAUSTED", /^alpha needs about [\d.]+ MiB, more than the whole memory budget of 1\.0 MiB; raise --memory-budget\.$/);
    await rejectsWith(d.client.createSession({ model: "gamma" }), "NOT_FOUND", exactly(`No model named "gamma" is loaded or in ${dir}; use one of alpha, beta (see \`nanollm models\`).`));
    const load = async () => {
      for await (const _ of d.client.loadModel({ name: "alpha", ctx: 512 }));
    };
    await rejectsWith(load(), "FAILED_PRECONDITION", exactly("alpha is loaded with ctx 1024; unload it first (`nanollm unload alpha`) to load it with other settings."));
    await rejectsWith(d.client.unloadModel("beta"), "NOT_FOUND", exactly('No model named "beta" is loaded; see the loaded ones with `nanollm ps`.'));
  });
});

describe("a model with a turn running is never unloaded for room", () => {
  it("a load that needs a busy model's room is RESOURCE_EXHAUSTED with one sentence, and goes through once the turn ended", async () => {
    const dir = tempDir("models");
    fs.copyFileSync(toolEagerModel(), path.join(dir, "eager.gguf"));
    fs.copyFileSync(tinyModel("tiny-seed2", 2), path.join(dir, "beta.gguf"));
    const probe = await inProcessDaemon(path.join(dir, "eager.gguf"), { ctx: 4096, daemon: { keepAliveMs: -1 } });
    const one = Number((await probe.client.listModels())[0]!.memoryBytes);
    await probe.stop();
    const d = await inProcessDaemon(path.join(dir, "eager.gguf"), { ctx: 4096, daemon: { modelsDir: dir, keepAliveMs: -1, memoryBudget: Math.floor(one * 1.5) } });
    try {
      const weather = { name: "WEATHER", description: "Returns the weather of a city.", parametersJson: JSON.stringify({ type: "object", properties: { city: { type: "string", maxLength: 8 } }, required: ["city"] }) };
      const s = await d.client.createSession({ chatTemplate: "chat-ml-tools", clientFunctions: [weather] });
      // The turn waits for this client's answer to the model's call: the model stays busy meanwhile.
      let called!: () => void;
      const calling = new Promise<void>((r) => (called = r));
      let answer!: (v: { result: string; isError: boolean }) => void;
      const answered = new Promise<{ result: string; isError: boolean }>((r) => (answer = r));
      const running = (async () => {
        for await (const _ of d.client.turn(s.sessionId, "Weather?", { maxNewTokens: 120 }, undefined, () => (called(), answered)));
      })();
      await Promise.race([calling, running.then(() => assert.fail("the model called no function"))]);
      await rejectsWith(d.client.createSession({ model: "beta" }), "RESOURCE_EXHAUSTED", /^Loading beta needs about [\d.]+ MiB and the loaded models \(eager\) take [\d.]+ MiB of the [\d.]+ MiB memory budget with turns running; wait for them to end, unload one with `nanollm unload NAME`, or raise --memory-budget\.$/);
      await rejectsWith(d.client.unloadModel("eager"), "FAILED_PRECONDITION", /^eager has a turn running; wait for it to end \(or cancel it\), then unload\.$/);
      answer({ result: "sunny", isError: false });
      await running;
      assert.equal((await d.client.createSession({ model: "beta" })).model, "beta");
      assert.deepEqual(await loadedNames(d.client), ["beta"]);
    } finally {
      await d.stop();
    }
  });
});

describe("nanollm models, load, ps, unload", () => {
  it("list the folder's models, load one with its progress and settings, show the loaded ones, and unload", async () => {
    const dir = modelsFolder();
    const d = await spawnDaemon(path.join(dir, "alpha.gguf"), ["--models-dir", dir, "--keep-alive", "-1", "--memory-budget", "4G", "--ctx", "512"]);
    try {
      const host = ["--host", d.address];
      const models = await nanollm(["models", ...host]);
      assert.equal(models.code, 0, models.stderr);
      assert.match(models.stdout, new RegExp(`^models folder ${dir}: 2 models · memory [\\d.]+ MiB of 4\\.0 GiB in use$`, "m"));
      assert.match(models.stdout, /^ {2}alpha {2}[\d.]+ MiB {2}\w+ {2}llama {2}ctx 32768 {2}loaded \([\d.]+ MiB · 0 sessions · idle \d+s\)$/m);
      assert.match(models.stdout, /^ {2}beta {2}[\d.]+ MiB {2}\w+ {2}llama {2}ctx 32768$/m);

      const load = await nanollm(["load", "beta", "--ctx", "256", "--parallel", "2", "--kv-cache-type", "f16", ...host]);
      assert.equal(load.code, 0, load.stderr);
      assert.match(load.stdout, /^loaded beta · [\d.]+ MiB · ctx 256×2 f16\n$/);
      assert.match(load.stderr, /^loading beta: \d+%$/m);

      const ps = await nanollm(["ps", ...host]);
      assert.equal(ps.code, 0, ps.stderr);
      assert.match(ps.stdout, /^alpha {2}[\d.]+ MiB · 0 sessions · idle \d+s {2}ctx 512×4 f16\nbeta {2}[\d.]+ MiB · 0 sessions · idle \d+s {2}ctx 256×2 f16\n$/);

      const unload = await nanollm(["unload", "beta", ...host]);
      assert.equal(unload.code, 0, unload.stderr);
      assert.equal(unload.stdout, "unloaded beta\n");
      assert.match((await nanollm(["ps", ...host])).stdout, /^alpha .*\n$/);

      // A session whose model was unloaded: `chat` says its model loads again, then replies.
      const s = await d.client.createSession({ chatTemplate: "chat-ml" });
      assert.equal((await nanollm(["unload", "alpha", ...host])).code, 0);
      const chat = await nanollm(["chat", "--session", s.sessionId, "--prompt", "Hello there", "--max-new-tokens", "4", ...host]);
      assert.equal(chat.code, 0, chat.stderr);
      assert.match(chat.stderr, /^\[loading alpha again: it was unloaded while idle\]$/m);
      assert.ok(chat.stdout.trim().length > 0);

      const again = await nanollm(["unload", "beta", ...host]);
      assert.equal(again.code, 1);
      assert.equal(again.stderr, "nanollm: No model named \"beta\" is loaded; see the loaded ones with `nanollm ps`.\n");
      const unknown = await nanollm(["load", "gamma", ...host]);
      assert.equal(unknown.code, 1);
      assert.equal(unknown.stderr, `nanollm: No model named "gamma" is loaded or in ${dir}; use one of alpha, beta (see \`nanollm models\`).\n`);
      const badBudget = await nanollm(["serve", "--memory-budget", "lots", "--model", path.join(dir, "alpha.gguf")]);
      assert.equal(badBudget.code, 1);
      assert.match(badBudget.stderr, /option '--memory-budget <bytes>' argument 'lots' is invalid\. "lots" is not a memory budget; write it as bytes or with a unit, e\.g\. 8G or 512M\./);
    } finally {
      await d.stop();
    }
  });
});
