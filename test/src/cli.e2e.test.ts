import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { once } from "node:events";
import net from "node:net";
import { DEFAULT_MODEL_URI } from "@nanollm/shared";
import { CLI, nanollm, spawnDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import fs from "node:fs";
import path from "node:path";

describe("nanollm chat, non-interactive", () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "1024"]);
  });
  after(() => d.stop());

  it("ends quietly when its reader stops early (nanollm models | head): no EPIPE stack trace", async () => {
    const child = spawn(process.execPath, [CLI, "models", "--host", d.address], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy(); // the reader is gone before the first line is written
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const [code] = (await once(child, "close")) as [number];
    assert.equal(stderr, "");
    assert.equal(code, 0);
  });

  it("runs each --prompt as one turn of one session: replies on stdout, stats on stderr", async () => {
    const r = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--prompt", "Hello there", "--prompt", "And then?", "--max-new-tokens", "12"]);
    assert.equal(r.code, 0, r.stderr);
    const replies = r.stdout.split("\n").filter(Boolean);
    assert.equal(replies.length, 2, r.stdout);
    assert.match(r.stderr, /template chat-ml \(requested\)/);
    const stats = [...r.stderr.matchAll(/(\d+) prompt tokens \((\d+) reused, (\d+) evaluated\).*?(\d+) tokens in/g)];
    assert.equal(stats.length, 2, r.stderr);
    assert.equal(stats[0]![4], "12");
    assert.ok(Number(stats[1]![2]) > 0, "the second turn reused the first turn's cache");
  });

  it("nanollm models names the backend, the llama.cpp binary, the threads and the model", async () => {
    const r = await nanollm(["models", "--host", d.address]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /backend cpu \(llama\.cpp (prebuilt|native)( \+ CPU backend built here)?\) · threads 1 per step, 1 per batch · 4 sequences/);
    assert.match(r.stdout, /^tiny-chatml {2}llama .*ctx 1024×4 {2}KV .* f16 {2}template chat-ml$/m);
  });

  it("takes the prompt from piped stdin, and greedy output is reproducible", async () => {
    const a = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--max-new-tokens", "10"], "Once upon a time\n");
    const b = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--prompt", "Once upon a time", "--max-new-tokens", "10"]);
    assert.equal(a.code, 0, a.stderr);
    assert.ok(a.stdout.trim().length > 0);
    assert.equal(a.stdout, b.stdout);
  });

  it("offers the model the functions of a --functions module and runs them in the client", async () => {
    const dir = tempDir("tools");
    const tools = path.join(dir, "tools.mjs");
    fs.writeFileSync(
      tools,
      `export function WEATHER({ city }) { return " it is sunny in " + city; }
WEATHER.description = "Returns the weather of a city.";
WEATHER.parameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
export const helper = 1;`,
    );
    const r = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--functions", tools, "--grammar", 'root ::= "WEATHER(\\"Oslo\\")"', "--prompt", "Weather?", "--max-new-tokens", "40"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'WEATHER("Oslo") it is sunny in Oslo\n');
  });

  it("continues a session with --session", async () => {
    const first = await nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--keep", "--prompt", "Hello there", "--max-new-tokens", "6"]);
    const id = /session (\S+)/.exec(first.stderr)?.[1];
    assert.ok(id, first.stderr);
    const second = await nanollm(["chat", "--host", d.address, "--session", id, "--prompt", "And then?", "--max-new-tokens", "6"]);
    assert.equal(second.code, 0, second.stderr);
    assert.equal((await d.client.getSession(id)).messageCount, 4);
    assert.match(second.stderr, /\((\d+) reused/);
  });

  it("Ctrl+C stops a one-shot chat, which exits 130 like any interrupted command (defect 13)", async () => {
    const proc = spawn(process.execPath, [CLI, "chat", "--host", d.address, "--chat-template", "raw", "--prompt", "Once upon a time", "--max-new-tokens", "4000", "--min-new-tokens", "4000"], { stdio: ["pipe", "pipe", "pipe"] });
    let stderr = "";
    proc.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    await once(proc.stdout, "data");
    proc.kill("SIGINT");
    const [code] = (await once(proc, "close")) as [number | null];
    assert.equal(code, 130, stderr);
    assert.match(stderr, /stop: cancelled/, "the turn ended with its stats");
  });

  it("rejects a bad flag with one sentence", async () => {
    const r = await nanollm(["chat", "--host", d.address, "--max-new-tokens", "lots", "--prompt", "x"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--max-new-tokens.*expected a whole number/);
  });
});

describe("nanollm without a daemon", () => {
  it("says nothing listens and suggests nanollm serve", async () => {
    const r = await nanollm(["chat", "--host", "127.0.0.1:1", "--prompt", "hi"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), "nanollm: Nothing is listening at 127.0.0.1:1; start the daemon with `nanollm serve` (or pass --host).");
  });

  it("serve on a busy port prints one sentence and nothing from grpc-js (defect 13)", async () => {
    const busy = net.createServer().listen(0, "127.0.0.1");
    await once(busy, "listening");
    const port = (busy.address() as net.AddressInfo).port;
    const r = await nanollm(["serve", "--model", tinyModel(), "--listen", `127.0.0.1:${port}`, "--gpu", "cpu", "--ephemeral"]);
    busy.close();
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim().split("\n").at(-1), `nanollm: Cannot listen on 127.0.0.1:${port} (the address is already in use); pick another address with --listen.`);
    assert.doesNotMatch(r.stderr, /No address added/);
  });

  it("pull of something that is neither a URI nor a file fails, and offline it gives up in bounded time (defect 4)", async () => {
    const notUri = await nanollm(["pull", "notauri"]);
    assert.equal(notUri.code, 1);
    assert.equal(notUri.stderr.trim(), `nanollm: "notauri" is neither an hf: URI, an http(s) URL nor a model file; give e.g. ${DEFAULT_MODEL_URI} or the path of a .gguf file.`);
    // A server that accepts connections and never answers: the network as offline looks to pull.
    const silent = net.createServer(() => {}).listen(0, "127.0.0.1");
    await once(silent, "listening");
    const port = (silent.address() as net.AddressInfo).port;
    const started = Date.now();
    const r = await nanollm(["pull", `http://127.0.0.1:${port}/model.gguf`], "", { env: { NANOLLM_CONNECT_TIMEOUT_MS: "1000", NANOLLM_MODELS_DIR: tempDir("models") } });
    silent.close();
    assert.equal(r.code, 1);
    assert.ok(Date.now() - started < 15_000, "it gave up");
    assert.equal(r.stderr.trim(), `nanollm: Cannot reach 127.0.0.1:${port} to fetch http://127.0.0.1:${port}/model.gguf (no answer within 1 s); when offline, use a .gguf file you have instead.`);
    assert.equal(r.stdout, "");
  });

  it("make run offline says MODEL=, the make variable, not a flag (defect 13)", async () => {
    const silent = net.createServer(() => {}).listen(0, "127.0.0.1");
    await once(silent, "listening");
    const port = (silent.address() as net.AddressInfo).port;
    const run = fileURLToPath(new URL("../../scripts/run.sh", import.meta.url));
    const r = spawnSync("bash", [run], {
      encoding: "utf8",
      env: { ...process.env, MODEL: "", NANOLLM_MODEL: "", NANOLLM_HOST: "127.0.0.1:1", HF_ENDPOINT: `http://127.0.0.1:${port}/`, NANOLLM_CONNECT_TIMEOUT_MS: "500", NANOLLM_MODELS_DIR: tempDir("models") },
    });
    silent.close();
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split("\n").at(-1), "make run: no model to start the daemon with; give a .gguf file you have with MODEL=path/to/model.gguf");
  });

  it("serve with a missing model file exits with one sentence", async () => {
    const r = await nanollm(["serve", "--model", "/nonexistent/model.gguf", "--listen", "127.0.0.1:0"]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), "nanollm: Model file /nonexistent/model.gguf does not exist; pass the path of a .gguf file.");
  });
});
