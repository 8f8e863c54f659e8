// Drain on SIGTERM: health NOT_SERVING, new turns refused, running ones finish (or are cancelled
// after --drain-grace, keeping what they generated), KV caches parked, leases released, exit 0.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { once } from "node:events";
import { describe, it } from "node:test";
import type { ChildProcess } from "node:child_process";
import { waitFor } from "./helpers/poll.js";
import { oneSentence, rejectsWith } from "./helpers/assertions.js";
import { spawnDaemon, turn } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import { heldTurn, WEATHER } from "./helpers/heldTurn.js";
import { testPostgres } from "./helpers/postgres.js";
import { postJson } from "./helpers/http.js";
import { healthClient } from "./helpers/standardClients.js";

// With PostgreSQL here, the daemons keep their sessions in it and the leases are checked too.
const pgOrWhy = await testPostgres();
const pg = typeof pgOrWhy === "string" ? undefined : pgOrWhy;
if (!pg) process.stdout.write(`# sessions in files only: ${pgOrWhy as string}\n`);

async function daemonOn(dataDir: string, store: string | undefined, extra: string[] = []) {
  return spawnDaemon(tinyModel(), ["--data-dir", dataDir, "--ctx", "1024", ...(store ? ["--store", store] : []), ...extra]);
}

function exited(proc: ChildProcess): Promise<number | null> {
  return proc.exitCode !== null ? Promise.resolve(proc.exitCode) : once(proc, "exit").then(([code]) => code as number | null);
}

async function healthOf(address: string): Promise<string> {
  const health = healthClient(address);
  try {
    return await new Promise<string>((resolve, reject) => health.check({ service: "nanollm.v1.ChatService" }, (err, res) => (err ? reject(err) : resolve(res.status))));
  } finally {
    health.close();
  }
}

describe("drain on SIGTERM", () => {
  it("finishes the running reply, refuses new turns, says NOT_SERVING, parks the cache, releases the lease and exits 0", async () => {
    const dataDir = tempDir("drain");
    const store = pg && (await pg.database());
    const d = await daemonOn(dataDir, store, ["--http", "127.0.0.1:0"]);
    const http = /OpenAI API on (http:\/\/\S+)\/v1/.exec(d.log())![1]!;
    const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
    const other = await d.client.createSession({ chatTemplate: "chat-ml" });
    const held = await heldTurn(d.client, s.sessionId);
    d.proc.kill("SIGTERM");
    while ((await healthOf(d.address)) !== "NOT_SERVING") await new Promise((r) => setTimeout(r, 20));
    const refused = turn(d.client, other.sessionId, "Hello?", 4);
    await rejectsWith(refused, "UNAVAILABLE", /^The daemon is shutting down and takes no new turns; send the turn again to reach another daemon/);
    await refused.catch((err: unknown) => assert.ok(oneSentence(err)));
    const viaHttp = await postJson(`${http}/v1/chat/completions`, { model: "tiny-chatml", messages: [{ role: "user", content: "Hello?" }], max_tokens: 4 });
    assert.equal(viaHttp.status, 503, "the HTTP APIs refuse new turns too");
    assert.match(viaHttp.text, /shutting down and takes no new turns/);
    if (store) assert.equal((await pg!.query(store, "SELECT 1 FROM nanollm_leases WHERE session_id = $1", [s.sessionId])).length, 1, "held while the turn runs");
    held.answer();
    const reply = await held.reply;
    assert.match(reply, /^WEATHER\("Oslo"\) sunny/, "the running reply completed");
    assert.equal(await exited(d.proc), 0);
    d.client.close();
    assert.ok(fs.existsSync(path.join(dataDir, "kv", "tiny-chatml", `${s.sessionId}.kv`)), "the KV cache is parked on disk");
    if (store) assert.equal((await pg!.query(store, "SELECT 1 FROM nanollm_leases")).length, 0, "no lease is left");
    // The restarted daemon has the turn, and its cache back.
    const again = await daemonOn(dataDir, store);
    try {
      const info = await again.client.getSession(s.sessionId, true);
      assert.deepEqual(info.history.map((m) => m.text), ["Weather?", reply]);
      const next = await turn(again.client, s.sessionId, "And tomorrow?", 4);
      assert.equal(next.end.stats!.reusedTokens, info.contextUsed, "no re-prefill after the restart");
    } finally {
      await again.stop();
    }
  });

  it("cancels the turns still running after --drain-grace, keeping what they generated", async () => {
    const dataDir = tempDir("drain-grace");
    const store = pg && (await pg.database());
    const d = await daemonOn(dataDir, store, ["--drain-grace", "0.5"]);
    const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
    const held = await heldTurn(d.client, s.sessionId);
    held.reply.catch(() => undefined);
    const started = Date.now();
    d.proc.kill("SIGTERM");
    assert.equal(await exited(d.proc), 0);
    assert.ok(Date.now() - started < 5000, `exited ${Date.now() - started} ms after SIGTERM`);
    d.client.close();
    const again = await daemonOn(dataDir, store);
    try {
      const history = (await again.client.getSession(s.sessionId, true)).history;
      assert.equal(history.length, 2);
      assert.match(history[1]!.text, /^WEATHER\("Oslo"\)/, "the reply so far is kept");
    } finally {
      await again.stop();
    }
  });

  it("exits at once on a second SIGTERM", async () => {
    const d = await daemonOn(tempDir("drain-twice"), undefined);
    const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
    const held = await heldTurn(d.client, s.sessionId);
    held.reply.catch(() => undefined);
    d.proc.kill("SIGTERM");
    await waitFor(() => /SIGTERM: draining/.test(d.log()), "the drain's log line", 10_000);
    const started = Date.now();
    d.proc.kill("SIGTERM");
    assert.equal(await exited(d.proc), 143);
    assert.ok(Date.now() - started < 10_000, "it did not wait out the 30 s drain grace");
    // 'exit' can come before the last of its output has been read.
    await waitFor(() => /SIGTERM again: exiting now/.test(d.log()), "the daemon's last log line");
    d.client.close();
  });
});
