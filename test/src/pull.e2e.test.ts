import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { once } from "node:events";
import type net from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { inProcessDaemon, nanollm } from "./helpers/daemon.js";
import { tempDir, tinyMmproj, tinyModel } from "./helpers/fixtures.js";

/** How the fake hub misbehaves for one file. */
interface Trouble {
  /** Sends this many bytes of the file, then drops the connection (once). */
  cutAt?: number;
  /** Sends this many bytes, then nothing more, keeping the connection open. */
  stallAt?: number;
  /** The SHA-256 the API claims (a wrong one). */
  claimedSha256?: string;
}

/** A Hugging Face hub on 127.0.0.1: the model API (siblings with LFS SHA-256s) and resolve URLs with Range. */
class FakeHub {
  readonly server: http.Server;
  readonly ranges: string[] = [];
  trouble = new Map<string, Trouble>();
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly repo: string,
    readonly files: Record<string, Buffer>,
  ) {
    this.server = http.createServer((req, res) => this.answer(req, res));
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  async start(): Promise<string> {
    this.server.listen(0, "127.0.0.1");
    await once(this.server, "listening");
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://hub");
    if (url.pathname === `/api/models/${this.repo}`) {
      const siblings = Object.entries(this.files).map(([name, data]) => ({ rfilename: name, size: data.length, lfs: { sha256: this.trouble.get(name)?.claimedSha256 ?? sha256(data), size: data.length } }));
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ id: this.repo, siblings: [{ rfilename: "README.md" }, ...siblings] }));
      return;
    }
    const prefix = `/${this.repo}/resolve/main/`;
    const name = url.pathname.startsWith(prefix) ? decodeURIComponent(url.pathname.slice(prefix.length)) : "";
    const data = this.files[name];
    if (!data) {
      res.statusCode = 404;
      res.end("not found");
      return;
    }
    const range = req.headers.range;
    if (range) this.ranges.push(`${name} ${range}`);
    const start = range ? Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0) : 0;
    res.statusCode = range ? 206 : 200;
    res.setHeader("content-length", data.length - start);
    if (range) res.setHeader("content-range", `bytes ${start}-${data.length - 1}/${data.length}`);
    const trouble = this.trouble.get(name);
    if (trouble?.cutAt !== undefined) {
      this.trouble.delete(name);
      res.flushHeaders();
      res.write(data.subarray(start, trouble.cutAt), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (trouble?.stallAt !== undefined) {
      res.write(data.subarray(start, trouble.stallAt));
      return;
    }
    res.end(data.subarray(start));
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = http.createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const sha256 = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");

describe("pull from a Hugging Face hub", () => {
  const model = fs.readFileSync(tinyModel());
  const projector = fs.readFileSync(tinyMmproj());
  const hub = new FakeHub("acme/tiny-GGUF", {
    "tiny-Q8_0.gguf": model,
    "tiny-F16.gguf": Buffer.from("another quantization, never fetched"),
    "mmproj-tiny-f16.gguf": projector,
  });
  let endpoint: string;
  before(async () => {
    endpoint = await hub.start();
  });
  after(() => hub.stop());
  const pull = (args: string[], modelsDir: string, env: Record<string, string> = {}) => nanollm(["pull", ...args, "--models-dir", modelsDir], "", { env: { NANOLLM_HF_ENDPOINT: endpoint, NANOLLM_CONNECT_TIMEOUT_MS: "1000", ...env } });

  it("hf:OWNER/REPO:QUANT fetches that model and the repository's projector beside it; a daemon on the folder sees a model that takes images; a second pull needs no network", async () => {
    const dir = tempDir("pull");
    const r = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir);
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dir, "acme_tiny-GGUF", "tiny-Q8_0.gguf");
    assert.equal(r.stdout, `${file}\n`);
    assert.ok(fs.readFileSync(file).equals(model));
    assert.ok(fs.readFileSync(path.join(dir, "acme_tiny-GGUF", "mmproj-tiny-f16.gguf")).equals(projector));
    assert.deepEqual(fs.readdirSync(path.join(dir, "acme_tiny-GGUF")).sort(), ["mmproj-tiny-f16.gguf", "tiny-Q8_0.gguf"]);
    const d = await inProcessDaemon(tinyModel(), { daemon: { modelsDir: dir, keepAliveMs: -1 } });
    try {
      const local = (await d.client.listLocalModels()).models.find((m) => m.name === "tiny-Q8_0");
      assert.ok(local?.images, "the projector was found beside the model");
      const s = await d.client.createSession({ model: "tiny-Q8_0" });
      assert.equal(s.model, "tiny-Q8_0");
      assert.ok((await d.client.listModels()).find((m) => m.name === "tiny-Q8_0")?.images);
    } finally {
      await d.stop();
    }
    const offline = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir, { NANOLLM_HF_ENDPOINT: `http://127.0.0.1:${await closedPort()}` });
    assert.equal(offline.code, 0, offline.stderr);
    assert.equal(offline.stdout, `${file}\n`);
  });

  it("a cut download fails with one sentence, keeps its .part, and the next pull resumes it with a Range request", async () => {
    const dir = tempDir("pull");
    const cut = 1_000_000;
    hub.trouble.set("tiny-Q8_0.gguf", { cutAt: cut });
    hub.ranges.length = 0;
    const first = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir);
    assert.equal(first.code, 1);
    assert.match(first.stderr, /^nanollm: The download of http:\/\/127\.0\.0\.1:\d+\/acme\/tiny-GGUF\/resolve\/main\/tiny-Q8_0\.gguf was cut after 1000000 (of \d+ )?bytes( \([^)]*\))?; run the command again to resume it\.\n$/);
    const part = path.join(dir, "acme_tiny-GGUF", "tiny-Q8_0.gguf.part");
    assert.equal(fs.statSync(part).size, cut);
    const second = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(hub.ranges, [`tiny-Q8_0.gguf bytes=${cut}-`]);
    assert.ok(fs.readFileSync(path.join(dir, "acme_tiny-GGUF", "tiny-Q8_0.gguf")).equals(model));
    assert.ok(!fs.existsSync(part));
  });

  it("a file that does not match the hub's checksum is refused and deleted", async () => {
    const dir = tempDir("pull");
    hub.trouble.set("tiny-Q8_0.gguf", { claimedSha256: "0".repeat(64) });
    try {
      const r = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^nanollm: The download of \S+tiny-Q8_0\.gguf does not match the checksum its hub gives \(SHA-256 000000000000…, got [0-9a-f]{12}…\), so it was deleted; run the command again, and if it fails the same way, tell the model's publisher\.\n$/);
      assert.deepEqual(fs.readdirSync(path.join(dir, "acme_tiny-GGUF")), ["mmproj-tiny-f16.gguf"]);
      assert.equal(r.stdout, "");
    } finally {
      hub.trouble.delete("tiny-Q8_0.gguf");
    }
  });

  it("a download that stalls, an unreachable hub, and an unknown quantization each fail in bounded time with one sentence", async () => {
    const dir = tempDir("pull");
    hub.trouble.set("tiny-Q8_0.gguf", { stallAt: 1000 });
    try {
      const started = Date.now();
      const stalled = await pull(["hf:acme/tiny-GGUF:Q8_0"], dir);
      assert.equal(stalled.code, 1);
      assert.ok(Date.now() - started < 10_000);
      assert.match(stalled.stderr, /^nanollm: The download of \S+ stalled \(no data for 1 s\) after 1000 bytes; run the command again to resume it\.\n$/);
    } finally {
      hub.trouble.delete("tiny-Q8_0.gguf");
    }
    const port = await closedPort();
    const refused = await pull(["hf:acme/tiny-GGUF:Q8_0"], tempDir("pull"), { NANOLLM_HF_ENDPOINT: `http://127.0.0.1:${port}` });
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, `nanollm: Cannot reach 127.0.0.1:${port} to fetch http://127.0.0.1:${port}/api/models/acme/tiny-GGUF?blobs=true (ECONNREFUSED); when offline, use a .gguf file you have instead.\n`);
    const unknown = await pull(["hf:acme/tiny-GGUF:Q3_K_S"], tempDir("pull"));
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, "nanollm: hf:acme/tiny-GGUF has no Q3_K_S model file; name one of tiny-Q8_0.gguf, tiny-F16.gguf (hf:acme/tiny-GGUF:QUANT or hf:acme/tiny-GGUF/FILE.gguf).\n");
    const missing = await pull(["hf:acme/nothing-here"], tempDir("pull"));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^nanollm: http:\/\/127\.0\.0\.1:\d+\/api\/models\/acme\/nothing-here\?blobs=true does not exist \(HTTP 404\); check the model's name\.\n$/);
  });
});
