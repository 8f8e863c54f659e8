import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { ensureBalancer, loggedPlacement, startBalancer, type Backend, type BalancerKind } from "./helpers/balancers.js";
import { freePort } from "./helpers/ports.js";
import { spawnDaemon, turn } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";
import { postJson, userText } from "./helpers/http.js";

const SESSIONS = 24;
const TURNS = 5;
const REPLY_TOKENS = 6;

type Daemon = Awaited<ReturnType<typeof spawnDaemon>> & Backend;

/** One client's chat through the balancer: a new session, then `turns` greedy turns. */
async function chat(address: string, n: number, turns: number): Promise<{ id: string; replies: number[][] }> {
  const client = new NanoClient(address);
  try {
    const s = await client.createSession({ chatTemplate: "chat-ml" });
    const replies: number[][] = [];
    for (let t = 0; t < turns; t++) replies.push((await turn(client, s.sessionId, userText(n, t), REPLY_TOKENS)).ids);
    return { id: s.sessionId, replies };
  } finally {
    client.close();
  }
}

/** Asserts each session's turns all ran on one daemon, and that the sessions spread over every daemon. */
async function assertAffinity(daemons: Daemon[], ids: string[], turnsEach: number): Promise<number[]> {
  const perDaemon = daemons.map(() => 0);
  for (const [id, row] of await loggedPlacement(daemons, ids, turnsEach)) {
    const homes = row.flatMap((n, i) => (n > 0 ? [i] : []));
    assert.equal(homes.length, 1, `session ${id} ran on daemons ${homes.join(", ")} (turns per daemon: ${row.join(", ")})`);
    const home = homes[0] ?? -1;
    assert.equal(row[home], turnsEach, `every turn of session ${id} was logged by its daemon`);
    perDaemon[home] = (perDaemon[home] ?? 0) + 1;
  }
  assert.ok(perDaemon.every((n) => n > 0), `the sessions spread over every daemon (sessions per daemon: ${perDaemon.join(", ")})`);
  return perDaemon;
}

describe("several daemons behind a load balancer: every call of a session reaches one daemon", { timeout: 300_000 }, () => {
  const daemons: Daemon[] = [];
  before(async () => {
    for (let i = 0; i < 3; i++) {
      const httpPort = await freePort();
      const d = await spawnDaemon(tinyModel(), ["--http", `127.0.0.1:${httpPort}`]);
      daemons.push({ ...d, grpcPort: Number(d.address.split(":").at(-1)), httpPort });
    }
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
  });

  for (const kind of ["nginx", "haproxy"] as BalancerKind[]) {
    it(`${kind}: ${SESSIONS} sessions × ${TURNS} turns from concurrent clients, each session's turns on one daemon; the HTTP APIs' session header likewise`, async (t) => {
      const found = ensureBalancer(kind);
      if ("why" in found) {
        console.log(`skipped: ${found.why}`);
        t.skip(found.why);
        return;
      }
      const lb = await startBalancer(kind, found.binary, daemons);
      try {
        const started = performance.now();
        const chats = await Promise.all(Array.from({ length: SESSIONS }, (_, n) => chat(lb.address, n, TURNS)));
        const seconds = (performance.now() - started) / 1000;
        assert.equal(new Set(chats.map((c) => c.id)).size, SESSIONS);
        const perDaemon = await assertAffinity(daemons, chats.map((c) => c.id), TURNS);
        console.log(`${kind}: ${SESSIONS * TURNS} turns in ${seconds.toFixed(1)} s; sessions per daemon ${perDaemon.join(", ")}`);
        // Greedy and alike: chats that said the same things got the same replies, wherever they ran.
        const again = await chat(lb.address, 0, TURNS);
        assert.deepEqual(again.replies, chats[0]?.replies, "a greedy chat's replies do not depend on the daemon it lands on");

        // The OpenAI API, pinned with X-Nanollm-Session: each session's requests reach one daemon.
        const pinned = Array.from({ length: 6 }, (_, i) => `http-${kind}-${i}`);
        for (const id of pinned) {
          const messages: { role: string; content: string }[] = [];
          for (let k = 0; k < 2; k++) {
            messages.push({ role: "user", content: userText(k, 1) });
            const res = await postJson(`${lb.httpBase}/v1/chat/completions`, { model: "tiny-chatml", messages, max_tokens: 4 }, { "x-nanollm-session": id });
            assert.equal(res.status, 200, res.text);
            const choice = (res.json.choices as { message: { content: string } }[])[0];
            messages.push({ role: "assistant", content: choice?.message.content ?? "" });
          }
        }
        for (const [id, row] of await loggedPlacement(daemons, pinned, 2)) assert.deepEqual([...row].sort(), [0, 0, 2], `HTTP session ${id}: both requests on one daemon (${row.join(", ")})`);
      } finally {
        await lb.stop();
      }
    });
  }
});
