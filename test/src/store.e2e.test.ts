// Sessions in PostgreSQL shared by several daemons: failover between daemons, leases, migrations,
// a database restart. Needs PostgreSQL (installed from Debian's packages by the helper); skipped
// with the reason where it cannot be started.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { DaemonOptions } from "@nanollm/daemon";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { rejectsWith } from "./helpers/assertions.js";
import { inProcessDaemon, spawnDaemon, turn } from "./helpers/daemon.js";
import { tempDir, tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { gradient, makePng } from "./helpers/images.js";
import { heldTurn, WEATHER } from "./helpers/heldTurn.js";
import { httpBase, postJson, userText } from "./helpers/http.js";
import { postgresOrSkip } from "./helpers/postgres.js";

const { pg, skip } = await postgresOrSkip();

/** A lease lifetime short enough for tests to wait one out. */
const LEASE_TTL_MS = 1500;

/** A daemon in this process keeping its sessions in `store`. */
function storeDaemon(store: string, opts: { dataDir?: string; daemon?: Partial<DaemonOptions>; http?: object } = {}) {
  return inProcessDaemon(tinyModel(), { ctx: 1024, parallel: 2, dataDir: opts.dataDir, http: opts.http, daemon: { store, leaseTtlMs: LEASE_TTL_MS, storeRetryMs: 1500, ...opts.daemon } });
}

describe("sessions in PostgreSQL shared by daemons", { skip }, () => {
  it("run the schema migrations once, however many daemons start at once, and refuse a newer schema", async () => {
    const db = await pg!.database();
    const daemons = await Promise.all([storeDaemon(db), storeDaemon(db)]);
    const third = await storeDaemon(db);
    try {
      const rows = await pg!.query<{ version: number; name: string }>(db, "SELECT version, name FROM nanollm_migrations ORDER BY version");
      assert.deepEqual(rows, [{ version: 1, name: "sessions, images and leases" }]);
      const applied = [...daemons, third].flatMap((d) => d.logLines.filter((l) => /applied schema migration 1 /.test(l)));
      assert.equal(applied.length, 1, "one daemon applied it, the others found it done");
    } finally {
      await Promise.all([...daemons, third].map((d) => d.stop()));
    }
    await pg!.query(db, "INSERT INTO nanollm_migrations (version, name) VALUES (99, 'from the future')");
    await rejectsWith(storeDaemon(db), "FAILED_PRECONDITION", /has schema version 99, newer than this nanollm's 1; upgrade nanollm/);
    await rejectsWith(storeDaemon("mysql://127.0.0.1/x"), "INVALID_ARGUMENT", /is not a postgres:\/\/ URL/);
    await rejectsWith(storeDaemon(`${pg!.url.replace(/\/postgres$/, "/absent")}`), "UNAVAILABLE", /refused the daemon \(database "absent" does not exist\); fix the URL given to --store\.$/);
    await rejectsWith(storeDaemon("postgres://postgres@127.0.0.1:1/x"), "UNAVAILABLE", /is unreachable \(refused\) and did not come back within 1\.5 s; start PostgreSQL or fix the URL given to --store\.$/);
  });

  describe("two daemons on one database", () => {
    let db: string;
    let a: Awaited<ReturnType<typeof storeDaemon>>;
    let b: Awaited<ReturnType<typeof storeDaemon>>;
    let solo: Awaited<ReturnType<typeof inProcessDaemon>>;
    before(async () => {
      db = await pg!.database();
      [a, b, solo] = await Promise.all([storeDaemon(db), storeDaemon(db), inProcessDaemon(tinyModel(), { ctx: 1024, parallel: 2 })]);
    });
    after(() => Promise.all([a, b, solo].map((d) => d?.stop())));

    it("continue a session created on one daemon on the other, with the greedy replies of a single daemon", async () => {
      const create = { chatTemplate: "chat-ml", systemPrompt: "Be brief." };
      const s = await a.client.createSession(create);
      const one = await solo.client.createSession(create);
      const texts = ["Hello there", "Tell me more", "And then?", "Why so?"];
      const daemons = [a, b, a, b];
      for (const [i, text] of texts.entries()) {
        const shared = await turn(daemons[i]!.client, s.sessionId, text, 10);
        const single = await turn(solo.client, one.sessionId, text, 10);
        assert.deepEqual(shared.ids, single.ids, `turn ${i + 1} equals the single daemon's`);
        if (i === 0) {
          // B reads the session it never held, several requests at once.
          const [listed, ...got] = await Promise.all([b.client.listSessions(), b.client.getSession(s.sessionId), b.client.getSession(s.sessionId.slice(0, 8))]);
          assert.equal(listed.find((x) => x.sessionId === s.sessionId)?.messageCount, 2, "ListSessions reads the store");
          assert.deepEqual(got.map((x) => x.messageCount), [2, 2]);
        }
        // B never held the session: its first turn evaluates it all; A keeps the prefix of its own cache.
        if (i === 1) assert.equal(shared.end.stats!.reusedTokens, 0);
        if (i === 2) assert.ok(shared.end.stats!.reusedTokens > 0, "A realigned its cache instead of evaluating it all");
      }
      for (const d of [a, b]) {
        const info = await d.client.getSession(s.sessionId, true);
        assert.equal(info.messageCount, 8, "both read the whole history");
        assert.deepEqual(info.history, (await solo.client.getSession(one.sessionId, true)).history);
      }
      // Changes made on one daemon are what the other sees, deletion included.
      await b.client.updateSession(s.sessionId, { systemPrompt: "Be long.\u0000" });
      assert.equal((await a.client.getSession(s.sessionId)).systemPrompt, "Be long.\u0000", "any text is kept, a NUL included");
      // Listing describes a session without keeping a copy on the daemon that lists.
      const listedOnly = await a.client.createSession(create);
      assert.ok((await b.client.listSessions()).some((x) => x.sessionId === listedOnly.sessionId));
      assert.ok(!b.daemon.state.sessions.all().some((x) => x.id === listedOnly.sessionId), "B keeps no copy of a session it only listed");
      await a.client.deleteSession(s.sessionId.slice(0, 8));
      await rejectsWith(b.client.getSession(s.sessionId), "NOT_FOUND", /There is no session/);
      await rejectsWith(turn(b.client, s.sessionId, "Still there?", 4), "NOT_FOUND", /There is no session/);
    });

    it("let one daemon generate in a session at a time: the other waits a lease out, then refuses with one sentence", async () => {
      const s = await a.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const held = await heldTurn(a.client, s.sessionId);
      const [lease] = await pg!.query<{ holder: string }>(db, "SELECT holder FROM nanollm_leases WHERE session_id = $1", [s.sessionId]);
      assert.ok(lease, "A holds the lease while its turn runs");
      const started = Date.now();
      await rejectsWith(turn(b.client, s.sessionId, "Me too", 4), "FAILED_PRECONDITION", new RegExp(`has a turn running on another daemon \\(${lease.holder.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\); wait for it to end`));
      assert.ok(Date.now() - started >= LEASE_TTL_MS, "it waited for a lease lifetime: a dead holder's would have expired");
      await rejectsWith(b.client.resetSession(s.sessionId), "FAILED_PRECONDITION", /turn running on another daemon/);
      // A renews the lease while it waits on its client.
      held.answer();
      assert.equal(await held.reply, 'WEATHER("Oslo") sunny says');
      assert.equal((await pg!.query(db, "SELECT 1 FROM nanollm_leases WHERE session_id = $1", [s.sessionId])).length, 0, "released at the turn's end");
      // B's next turn goes at once and continues after A's.
      const next = await turn(b.client, s.sessionId, "Me too", 4);
      assert.equal(next.ids.length, 4);
      assert.equal((await a.client.getSession(s.sessionId)).messageCount, 4);
    });

    it("a turn waiting for another daemon's turn goes on when it ends, after it in the history", async () => {
      const s = await a.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const held = await heldTurn(a.client, s.sessionId);
      // B renews a lease of its own meanwhile: the one it waits for is not its yet, nor lost.
      const busy = await heldTurn(b.client, (await b.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] })).sessionId);
      const waiting = turn(b.client, s.sessionId, "After you", 4);
      await new Promise((r) => setTimeout(r, LEASE_TTL_MS / 3 * 2 + 200));
      held.answer();
      await held.reply;
      const after = await waiting;
      assert.equal(after.ids.length, 4, `not cut short (${after.end.stopReason})`);
      busy.answer();
      await busy.reply;
      const history = (await b.client.getSession(s.sessionId, true)).history;
      assert.deepEqual(history.map((m) => m.text.slice(0, 9)), ["Weather?", (await held.reply).slice(0, 9), "After you", history[3]!.text.slice(0, 9)]);
    });

    it("brings a restarted daemon's parked KV cache back for a session read from the store", async () => {
      const dataDir = tempDir("store-kv");
      const first = await storeDaemon(db, { dataDir });
      const s = await first.client.createSession({ chatTemplate: "chat-ml" });
      await turn(first.client, s.sessionId, "Remember this", 8);
      const used = (await first.client.getSession(s.sessionId)).contextUsed;
      await first.stop();
      const again = await storeDaemon(db, { dataDir });
      try {
        const next = await turn(again.client, s.sessionId, "Go on", 4);
        assert.equal(next.end.stats!.reusedTokens, used, "the state file on its disk, not a re-prefill");
      } finally {
        await again.stop();
      }
    });
  });

  it("continue a session an HTTP client pins (X-Nanollm-Session) on another daemon, as a single daemon would", async () => {
    const db = await pg!.database();
    const [a, b] = await Promise.all([storeDaemon(db, { http: {} }), storeDaemon(db, { http: {} })]);
    const solo = await inProcessDaemon(tinyModel(), { ctx: 1024, parallel: 2, http: {} });
    try {
      const messages = [{ role: "user", content: userText(3, 0) }];
      const ask = async (d: { daemon: Parameters<typeof httpBase>[0]["daemon"] }, pin: string) => {
        const r = await postJson(`${httpBase(d)}/v1/chat/completions`, { model: "tiny-chatml", messages, max_tokens: 6, temperature: 0 }, { "X-Nanollm-Session": pin });
        assert.equal(r.status, 200, r.text);
        return (r.json.choices as { message: { content: string } }[])[0]!.message.content;
      };
      const first = await ask(a, "pinned");
      assert.equal(await ask(solo, "pinned"), first);
      messages.push({ role: "assistant", content: first }, { role: "user", content: userText(3, 1) });
      assert.equal(await ask(b, "pinned"), await ask(solo, "pinned"), "B continues it from the store");
      assert.equal((await a.client.getSession("pinned")).messageCount, 4);
    } finally {
      await Promise.all([a.stop(), b.stop(), solo.stop()]);
    }
  });

  it("keep images once by hash, and another daemon shows the model the same image", async () => {
    const db = await pg!.database();
    const mmproj = { mmproj: tinyMmproj() };
    const [a, b] = await Promise.all([storeDaemon(db, { daemon: mmproj }), storeDaemon(db, { daemon: mmproj })]);
    const solo = await inProcessDaemon(tinyModel(), { ctx: 1024, parallel: 2, daemon: mmproj });
    try {
      const png = { name: "gradient.png", data: makePng(64, 64, gradient) };
      const say = async (client: NanoClient, id: string, text: string, images: (typeof png)[] = []) => {
        const ids: number[] = [];
        for await (const ev of client.turn(id, text, { maxNewTokens: 8 }, undefined, undefined, images)) if (ev.kind?.$case === "text") ids.push(...ev.kind.text.tokenIds);
        return ids;
      };
      const s = await a.client.createSession({ chatTemplate: "chat-ml" });
      const one = await solo.client.createSession({ chatTemplate: "chat-ml" });
      assert.deepEqual(await say(a.client, s.sessionId, "What is in this picture?", [png]), await say(solo.client, one.sessionId, "What is in this picture?", [png]));
      await say(a.client, (await a.client.createSession({ chatTemplate: "chat-ml" })).sessionId, "And this one?", [png]);
      assert.deepEqual(await pg!.query(db, "SELECT length(bytes) AS n FROM nanollm_images"), [{ n: png.data.length }], "stored once");
      // B never saw the image: it reads the bytes from the database to rebuild the cache.
      assert.deepEqual(await say(b.client, s.sessionId, "And the colours?"), await say(solo.client, one.sessionId, "And the colours?"));
    } finally {
      await Promise.all([a.stop(), b.stop(), solo.stop()]);
    }
  });

  it("take a SIGKILLed daemon's session over once its lease expires, losing no completed turn", async () => {
    const db = await pg!.database();
    const killed = await spawnDaemon(tinyModel(), ["--store", db, "--ctx", "1024"], { NANOLLM_LEASE_TTL_MS: String(LEASE_TTL_MS) });
    const other = await storeDaemon(db);
    try {
      const s = await killed.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const first = await turn(killed.client, s.sessionId, "Hello there", 6);
      const held = await heldTurn(killed.client, s.sessionId);
      held.reply.catch(() => undefined);
      killed.proc.kill("SIGKILL");
      const killedAt = Date.now();
      let firstToken = 0;
      for await (const ev of other.client.turn(s.sessionId, "Are you there?", { maxNewTokens: 4 })) if (ev.kind?.$case === "text" && !firstToken) firstToken = Date.now();
      const failover = firstToken - killedAt;
      process.stdout.write(`# failover (SIGKILL to the next turn's first token on another daemon, lease ${LEASE_TTL_MS} ms): ${failover} ms\n`);
      assert.ok(failover <= LEASE_TTL_MS + 3000, `took over in ${failover} ms`);
      const history = (await other.client.getSession(s.sessionId, true)).history;
      assert.deepEqual(history.map((m) => m.text).slice(0, 3), ["Hello there", first.text, "Are you there?"], "the completed turn is kept; the killed one never completed");
    } finally {
      killed.client.close();
      await other.stop();
    }
  });

  it("answer UNAVAILABLE while the database is down, ride out a restart mid-turn, and lose nothing", async () => {
    const db = await pg!.database();
    // Leases outlive the restarts here: a daemon cut off longer than its lease stops its turns (next test).
    const d = await storeDaemon(db, { daemon: { leaseTtlMs: 10_000 } });
    const solo = await inProcessDaemon(tinyModel(), { ctx: 1024, parallel: 2 });
    try {
      const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const one = await solo.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const same = async (text: string) => assert.deepEqual((await turn(d.client, s.sessionId, text, 6)).ids, (await turn(solo.client, one.sessionId, text, 6)).ids);
      await same("Hello there");
      pg!.stop();
      try {
        await rejectsWith(turn(d.client, s.sessionId, "Anyone?", 4), "UNAVAILABLE", /^The session store \(PostgreSQL at postgres:\/\/postgres@127\.0\.0\.1:\d+\/\w+\) is unreachable \(refused\) and did not come back within 1\.5 s; nothing was saved, retry when the database is back\.$/);
        await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml" }), "UNAVAILABLE", /session store .* is unreachable/);
      } finally {
        pg!.start();
      }
      await same("Back again");
      // The database restarts while a turn waits on its client: the turn's save reconnects.
      const held = await heldTurn(d.client, s.sessionId);
      pg!.stop();
      pg!.start();
      held.answer();
      assert.match(await held.reply, /^WEATHER\("Oslo"\) sunny/);
      // Down when a turn ends: the client hears it failed, and the history does not hold it.
      const lost = await heldTurn(d.client, s.sessionId);
      pg!.stop();
      try {
        lost.answer();
        await rejectsWith(lost.reply, "UNAVAILABLE", /session store .* is unreachable/);
      } finally {
        pg!.start();
      }
      const history = (await d.client.getSession(s.sessionId, true)).history;
      assert.deepEqual(history.map((m) => m.text.slice(0, 11)), ["Hello there", history[1]!.text.slice(0, 11), "Back again", history[3]!.text.slice(0, 11), "Weather?", 'WEATHER("Os']);
      assert.ok(d.logLines.some((l) => /is reachable again after/.test(l)));
    } finally {
      await Promise.all([d.stop(), solo.stop()]);
    }
  });

  it("stop a daemon's own turn before a lease it cannot renew may expire: another daemon may take over", async () => {
    const db = await pg!.database();
    const d = await storeDaemon(db);
    try {
      const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const cut = await heldTurn(d.client, s.sessionId);
      const stoppedAt = Date.now();
      pg!.stop();
      try {
        while (!d.logLines.some((l) => l.startsWith(`could not renew the lease of session ${s.sessionId}`) && /its turn here is stopped/.test(l))) {
          assert.ok(Date.now() - stoppedAt < LEASE_TTL_MS + 1000, "stopped before the lease could have expired");
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        pg!.start();
      }
      cut.answer();
      // The reply stopped where it was (a whole one goes on after the function's answer), or failed.
      const outcome = await cut.reply.catch((err: Error) => err.message);
      assert.doesNotMatch(outcome, /says$/);
      const history = (await d.client.getSession(s.sessionId, true)).history;
      assert.ok(history.every((m) => !m.text.endsWith("says")));
    } finally {
      await d.stop();
    }
  });
});

after(() => pg?.remove());
