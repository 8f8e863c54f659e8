import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { TokenFile } from "@nanollm/daemon/dist/auth/TokenFile.js";
import { after, before, describe, it } from "node:test";
import { StopReason, type ChatEvent } from "@nanollm/shared";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import { openaiClient } from "./helpers/http.js";
import { WEATHER } from "./helpers/heldTurn.js";
import { oneSentence, rejectsWith } from "./helpers/assertions.js";

/** A reply long enough to attach to while it streams. */
const LONG = { maxNewTokens: 1500, minNewTokens: 1500 };

/** The events of one turn from a stream of a session's events, up to its end (or error). */
async function turnEvents(events: AsyncIterable<ChatEvent>, turnId?: string, onEvent?: (e: ChatEvent) => void): Promise<ChatEvent[]> {
  const out: ChatEvent[] = [];
  for await (const e of events) {
    if (turnId !== undefined && e.turnId !== turnId) continue;
    out.push(e);
    onEvent?.(e);
    if (e.kind?.$case === "end" || e.kind?.$case === "error") break;
  }
  return out;
}

const textOf = (events: ChatEvent[]) => events.map((e) => (e.kind?.$case === "text" ? e.kind.text.text : "")).join("");
const idsOf = (events: ChatEvent[]) => events.flatMap((e) => (e.kind?.$case === "text" ? e.kind.text.tokenIds : []));
const replyOf = (events: ChatEvent[]) => {
  const end = events.at(-1)?.kind;
  assert.equal(end?.$case, "end", "the turn ended");
  return end.$case === "end" ? end.end.reply : "";
};

/** Resolves with the first event `events` yields that matches, leaving the rest to be read. */
function firstWhere(events: ChatEvent[], match: (e: ChatEvent) => boolean): Promise<ChatEvent> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      const e = events.find(match);
      if (e) {
        clearInterval(timer);
        resolve(e);
      }
    }, 2);
  });
}

describe("Attach: watching a session's turns", () => {
  let d: TestDaemon;
  let other: NanoClient;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 4096, parallel: 2, daemon: { replayEvents: 64 } });
    other = new NanoClient(d.address);
  });
  after(async () => {
    other.close();
    await d.stop();
  });

  it("a watcher attached mid-reply receives exactly the sender's events from that point, in order, and several watchers all do", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const sent: ChatEvent[] = [];
    const sending = turnEvents(d.client.turn(s.sessionId, "Tell a long story", LONG, undefined, undefined, [], { turnId: "long" }), "long", (e) => sent.push(e));
    const firstText = await firstWhere(sent, (e) => e.kind?.$case === "text");
    // From now (the running turn from its start), and from the seq the sender saw last.
    const watchers = [turnEvents(other.attach(s.sessionId), "long"), turnEvents(other.attach(s.sessionId), "long"), turnEvents(other.attach(s.sessionId, firstText.seq), "long")];
    const [fromStart, again, fromSeq] = (await Promise.all(watchers)) as [ChatEvent[], ChatEvent[], ChatEvent[]];
    await sending;
    assert.ok(textOf(sent).length > 0 && sent.length > 5, `the reply streamed in ${sent.length} events`);
    assert.deepEqual(sent.map((e) => e.seq), sent.map((_, i) => sent[0]!.seq! + i), "the sender's events are numbered 1 by 1");
    const user = fromStart[0]!.kind;
    assert.equal(user?.$case === "user" && user.user.text, "Tell a long story", "a watcher's first event of a turn is its user message (the sender is not sent its own)");
    assert.equal(fromStart[0]!.seq, sent[0]!.seq! - 1);
    assert.deepEqual(fromStart.slice(1), sent, "a watcher attached mid-reply gets the running turn from its first event, exactly as sent");
    assert.deepEqual(again, fromStart, "so does a second watcher");
    const i = sent.indexOf(firstText);
    assert.deepEqual(fromSeq, sent.slice(i + 1), "a watcher attaching after a seq gets exactly the events after it");
    assert.deepEqual(idsOf(fromStart), (await d.client.getSession(s.sessionId, true)).history.at(-1)!.tokenIds.slice(0, idsOf(sent).length), "the token ids are the reply's");
  });

  it("a watcher sees every turn, whoever sends it: the user message and the reply, in the session's order", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const abort = new AbortController();
    const seen: ChatEvent[] = [];
    const watching = (async () => {
      for await (const e of other.attach(s.sessionId, undefined, abort.signal)) seen.push(e);
    })();
    await new Promise((r) => setTimeout(r, 100));
    const a = await turn(d.client, s.sessionId, "Hello from A", 8);
    const b = await turn(other, s.sessionId, "Hello from B", 8);
    await firstWhere(seen, (e) => e.kind?.$case === "end" && e.kind.end.reply === b.text && seen.filter((x) => x.kind?.$case === "end").length === 2);
    abort.abort();
    await watching;
    const users = seen.filter((e) => e.kind?.$case === "user").map((e) => (e.kind?.$case === "user" ? e.kind.user.text : ""));
    assert.deepEqual(users, ["Hello from A", "Hello from B"]);
    const ends = seen.filter((e) => e.kind?.$case === "end").map((e) => (e.kind?.$case === "end" ? e.kind.end.reply : ""));
    assert.deepEqual(ends, [a.text, b.text]);
    assert.deepEqual(seen.map((e) => e.seq), seen.map((_, i) => seen[0]!.seq! + i), "nothing missing, nothing twice");
  });

  it("a second writer waits for the running turn and runs after it; with no_wait it is refused in one sentence", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const first: ChatEvent[] = [];
    const running = turnEvents(d.client.turn(s.sessionId, "Tell a long story", LONG), undefined, (e) => first.push(e));
    await firstWhere(first, (e) => e.kind?.$case === "text");
    const refused = turnEvents(other.turn(s.sessionId, "me too", { maxNewTokens: 4 }, undefined, undefined, [], { noWait: true }));
    await rejectsWith(refused, "FAILED_PRECONDITION", /already has a turn running; send again when it ends, or without --no-wait/);
    assert.equal((await d.client.getSession(s.sessionId)).busy, true, "the running turn goes on");
    const queued = await turnEvents(other.turn(s.sessionId, "me too", { maxNewTokens: 4 }));
    const done = await running;
    assert.ok(queued[0]!.seq! > done.at(-1)!.seq!, "the queued turn's first event comes after the running turn's end");
    assert.equal(replyOf(done).length > 0, true);
    const history = (await d.client.getSession(s.sessionId, true)).history.map((m) => m.text);
    assert.deepEqual([history[0], history[2], history[3]], ["Tell a long story", "me too", replyOf(queued)], "the turns ran one after the other");
  });

  it("a reattaching client gets the events after its last seq; events that left the replay buffer are refused in one sentence", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const t1 = await turnEvents(d.client.turn(s.sessionId, "One", { maxNewTokens: 40 }));
    const t2 = await turnEvents(d.client.turn(s.sessionId, "Two", { maxNewTokens: 40 }));
    const replay = await turnEvents(other.attach(s.sessionId, t1.at(-1)!.seq), t2[0]!.turnId);
    assert.deepEqual(replay.slice(1), t2, "replay after the seq of the first turn's end: all of the second turn");
    assert.equal(replay[0]!.kind?.$case === "user" && replay[0]!.kind.user.text, "Two");
    assert.deepEqual(await turnEvents(other.attach(s.sessionId, t2[0]!.seq), t2[0]!.turnId), t2.slice(1), "replay after the seq of its first text");
    // 64 events are kept: enough turns push the first one out.
    let last = t2;
    while (last.at(-1)!.seq! - t1[0]!.seq! < 80) last = await turnEvents(d.client.turn(s.sessionId, "More", { maxNewTokens: 40 }));
    const gone = turnEvents(other.attach(s.sessionId, t1[0]!.seq));
    await rejectsWith(gone, "OUT_OF_RANGE", /have left its replay buffer \(NANOLLM_REPLAY_EVENTS keeps 64 besides the running turn\); read the conversation with GetSession and attach without after_seq\.$/);
    await gone.catch((e: unknown) => assert.ok(oneSentence(e)));
    await rejectsWith(turnEvents(other.attach(s.sessionId, last.at(-1)!.seq! + 100)), "OUT_OF_RANGE", /has no event \d+ yet/);
    // A client resuming its turn names it: a turn this daemon does not hold (another daemon ran it) is refused, kept ones are not.
    await rejectsWith(turnEvents(other.attach(s.sessionId, last.at(-1)!.seq! - 1, undefined, "t-elsewhere")), "OUT_OF_RANGE", /^Turn t-elsewhere of session \S+ is not kept by this daemon \(it restarted, or the session now runs on another one\); send the message again\.$/);
    assert.deepEqual(await turnEvents(other.attach(s.sessionId, last.at(-1)!.seq! - 1, undefined, last[0]!.turnId)), last.slice(-1), "its own kept turn's rest");
    const info = await d.client.getSession(s.sessionId);
    assert.equal(info.historySeq, last.at(-1)!.seq! - 0, "GetSession says which events its history holds");
  });

  it("an unknown session is NOT_FOUND", async () => {
    await rejectsWith(turnEvents(other.attach("no-such-session")), "NOT_FOUND", /There is no session "no-such-session"/);
  });

  it("deleting the session ends its watchers with NOT_FOUND", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const watching = rejectsWith(turnEvents(other.attach(s.sessionId)), "NOT_FOUND", /was deleted; there is nothing more to watch\.$/);
    await new Promise((r) => setTimeout(r, 50));
    await d.client.deleteSession(s.sessionId);
    await watching;
  });
});

describe("Attach: a client whose connection drops mid-reply", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 4096, parallel: 2, daemon: { resumeGraceMs: 1500 } });
  });
  after(async () => d.stop());

  /** A TCP proxy to the daemon whose open connections can be cut (it keeps listening). */
  async function proxy(target: string) {
    const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
    const sockets = new Set<net.Socket>();
    const server = net.createServer((client) => {
      const up = net.connect(port, host);
      for (const s of [client, up]) {
        sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => sockets.delete(s));
      }
      client.pipe(up).pipe(client);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return {
      address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      cut: () => sockets.forEach((s) => s.destroy()),
      close: () => new Promise((r) => server.close(r)),
    };
  }

  it("reattaches and loses no token: what it got before and after the cut is the whole reply", async () => {
    const p = await proxy(d.address);
    const client = new NanoClient(p.address);
    try {
      const s = await client.createSession({ chatTemplate: "chat-ml" });
      const got: ChatEvent[] = [];
      let cutAt = -1;
      await turnEvents(client.turn(s.sessionId, "Tell a long story", LONG), undefined, (e) => {
        got.push(e);
        if (cutAt < 0 && e.kind?.$case === "text") {
          cutAt = got.length;
          p.cut();
        }
      });
      assert.ok(cutAt > 0 && got.length > cutAt + 2, `events came after the cut (${got.length - cutAt})`);
      const reply = replyOf(got);
      assert.equal(textOf(got), reply, "the text before and after the cut is the whole reply");
      const bot = (await d.client.getSession(s.sessionId, true)).history.at(-1)!;
      assert.deepEqual(idsOf(got), bot.tokenIds.slice(0, idsOf(got).length));
      assert.equal(idsOf(got).length, LONG.maxNewTokens, "every token of the reply arrived");
    } finally {
      client.close();
      await p.close();
    }
  });

  it("a cancel asked for after reattaching reaches the turn (from a new stream: its own is gone)", async () => {
    const p = await proxy(d.address);
    const client = new NanoClient(p.address);
    try {
      const s = await client.createSession({ chatTemplate: "chat-ml" });
      const abort = new AbortController();
      let texts = 0;
      const got = await turnEvents(client.turn(s.sessionId, "Tell a long story", { maxNewTokens: 3000, minNewTokens: 3000 }, abort.signal), undefined, (e) => {
        if (e.kind?.$case !== "text") return;
        if (++texts === 1) p.cut();
        if (texts === 4) abort.abort();
      });
      const end = got.at(-1)?.kind;
      assert.equal(end?.$case === "end" && end.end.stopReason, StopReason.STOP_REASON_CANCELLED);
      assert.ok(end?.$case === "end" && end.end.stats!.generatedTokens < 3000, "stopped early");
      assert.equal(textOf(got), replyOf(got), "and nothing was lost on the way");
    } finally {
      client.close();
      await p.close();
    }
  });

  it("after reattaching, a call of the client's own function is answered from a new stream and the reply goes on", async () => {
    const p = await proxy(d.address);
    const client = new NanoClient(p.address);
    try {
      const s = await client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      let cut = false;
      const got = await turnEvents(
        client.turn(s.sessionId, "Weather?", { grammar: `root ::= ${JSON.stringify('WEATHER("Oslo") says')}`, maxNewTokens: 30 }, undefined, async () => ({ result: " sunny", isError: false })),
        undefined,
        (e) => {
          if (!cut && e.kind?.$case === "text") {
            cut = true;
            p.cut();
          }
        },
      );
      assert.ok(got.some((e) => e.kind?.$case === "functionCall"), "the call came through the reattached stream");
      assert.equal(replyOf(got), 'WEATHER("Oslo") sunny says', "the client's answer reached the model");
    } finally {
      client.close();
      await p.close();
    }
  });

  it("a resumable turn nobody comes back for is cancelled after the grace time", async () => {
    const p = await proxy(d.address);
    const client = new NanoClient(p.address);
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    try {
      const events: ChatEvent[] = [];
      const abandoned = turnEvents(client.turn(s.sessionId, "Tell a long story", { maxNewTokens: 3000, minNewTokens: 3000 }), undefined, (e) => events.push(e));
      await firstWhere(events, (e) => e.kind?.$case === "text");
      // Cut, and keep it from coming back: the proxy stops too.
      await Promise.all([p.close(), p.cut()]);
      for (let i = 0; i < 200 && (await d.client.getSession(s.sessionId)).busy; i++) await new Promise((r) => setTimeout(r, 20));
      client.close();
      await abandoned.catch(() => undefined);
    } finally {
      client.close();
    }
    const info = await d.client.getSession(s.sessionId, true);
    assert.equal(info.busy, false, "the turn ended");
    assert.ok(info.history.at(-1)!.tokenIds.length < 3000, `it was cancelled after ${info.history.at(-1)!.tokenIds.length} tokens`);
  });
});

describe("Attach: a watcher that falls behind", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 256, daemon: { watchBehindEvents: 4 } });
  });
  after(async () => d.stop());

  it("is dropped with RESOURCE_EXHAUSTED and the seq to reattach after, and the sender is not held up", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const watcher = new NanoClient(d.address);
    try {
      const stream = watcher.attach(s.sessionId);
      // Read one event, then stop reading while big events pile up (each user message is 50 kB).
      const first = stream.next();
      const big = "word ".repeat(10_000);
      await rejectsWith(turn(d.client, s.sessionId, big, 4), "INVALID_ARGUMENT", /more than the session's context/);
      assert.equal((await first).value?.kind?.$case, "user");
      const started = performance.now();
      // Past what the client and the connection buffer (16 messages each way, a 64 kB window).
      for (let i = 0; i < 40; i++) await rejectsWith(turn(d.client, s.sessionId, big, 4), "INVALID_ARGUMENT", /more than the session's context/);
      assert.ok(performance.now() - started < 20_000, "the sender went on while the watcher read nothing");
      const rest = (async () => {
        for (;;) if ((await stream.next()).done) return;
      })();
      await rejectsWith(rest, "RESOURCE_EXHAUSTED", /^This watcher fell \d+ events behind session .* and was dropped; attach again with after_seq \d+ to catch up\.$/);
    } finally {
      watcher.close();
    }
  });
});

describe("Attach: metrics", () => {
  let d: Awaited<ReturnType<typeof inProcessDaemon>>;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 4096, daemon: { metrics: "127.0.0.1:0" } });
  });
  after(async () => d.stop());

  it("/metrics counts the watchers and the turns waiting for their session", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const stop = new AbortController();
    const watchers = [0, 1].map(() => turnEvents(d.client.attach(s.sessionId, undefined, stop.signal)).catch(() => []));
    const first: ChatEvent[] = [];
    const running = turnEvents(d.client.turn(s.sessionId, "Tell a long story", LONG, stop.signal), undefined, (e) => first.push(e));
    await firstWhere(first, (e) => e.kind?.$case === "text");
    const queued = turnEvents(d.client.turn(s.sessionId, "Next", { maxNewTokens: 2 }, stop.signal)).catch(() => []);
    await new Promise((r) => setTimeout(r, 100));
    const text = await (await fetch(`http://${d.daemon.metricsAddress}/metrics`)).text();
    assert.match(text, /^nanollm_watchers\{model="tiny-chatml"\} 2$/m);
    assert.match(text, /^nanollm_turns_waiting_for_session\{model="tiny-chatml"\} 1$/m);
    stop.abort();
    await Promise.all([running.catch(() => []), queued, ...watchers]);
  });
});

describe("Attach: a session an HTTP client pins", () => {
  let d: Awaited<ReturnType<typeof inProcessDaemon>>;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { ctx: 1024, http: {} });
  });
  after(async () => d.stop());

  it("shows its turns to watchers like any other: the message, the text the client got, the end", async () => {
    const pinned = openaiClient(d, { "X-Nanollm-Session": "watched-chat" });
    await pinned.chat.completions.create({ model: "tiny-chatml", messages: [{ role: "user", content: "First" }], max_tokens: 4, temperature: 0 });
    const watching = turnEvents(d.client.attach("watched-chat"));
    await new Promise((r) => setTimeout(r, 100));
    const r = await pinned.chat.completions.create({ model: "tiny-chatml", messages: [{ role: "user", content: "Hello from HTTP" }], max_tokens: 12, temperature: 0 });
    const seen = await watching;
    const user = seen[0]!.kind;
    assert.equal(user?.$case === "user" && user.user.text, "Hello from HTTP");
    assert.equal(textOf(seen), r.choices[0]!.message.content);
    assert.equal(replyOf(seen), r.choices[0]!.message.content);
  });
});

describe("Attach: who may watch", () => {
  const data = tempDir("attach-auth");
  let d: TestDaemon;
  const as: Record<string, NanoClient> = {};
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { dataDir: data, ctx: 512 });
    const tokens = new TokenFile(path.join(data, "tokens.json"));
    for (const [name, admin] of [["alice", false], ["bob", false], ["root", true]] as const) as[name] = new NanoClient(d.address, { token: tokens.add(name, admin) });
  });
  after(async () => {
    for (const c of Object.values(as)) c.close();
    await d.stop();
    fs.rmSync(data, { recursive: true, force: true });
  });

  it("the owner and an admin may attach; another identity finds no such session", async () => {
    const s = await as.alice!.createSession({ chatTemplate: "chat-ml" });
    await rejectsWith(turnEvents(as.bob!.attach(s.sessionId)), "NOT_FOUND", /There is no session/);
    const [own, admin] = [turnEvents(as.alice!.attach(s.sessionId)), turnEvents(as.root!.attach(s.sessionId))];
    await new Promise((r) => setTimeout(r, 100));
    const sent = await turnEvents(as.alice!.turn(s.sessionId, "Hello", { maxNewTokens: 6 }));
    assert.deepEqual((await own).slice(1), sent);
    assert.deepEqual((await admin).slice(1), sent);
    const user = (await own)[0]!.kind;
    assert.equal(user?.$case === "user" && user.user.sender, "alice", "watchers see who sent the turn");
  });
});
