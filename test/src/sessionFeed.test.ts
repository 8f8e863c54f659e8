import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NanoError, type ChatEvent } from "@nanollm/shared";
import { SessionFeed } from "@nanollm/daemon/dist/sessions/SessionFeed.js";
import { TurnQueue } from "@nanollm/daemon/dist/sessions/TurnQueue.js";

const text = (t: string): ChatEvent => ({ turnId: "t", sessionId: "s", kind: { $case: "text", text: { text: t, tokenIds: [] } } });
const texts = (events: ChatEvent[]) => events.map((e) => (e.kind?.$case === "text" ? e.kind.text.text : "?"));
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof NanoError ? err.code : String(err);
  }
  return "no error";
};

describe("SessionFeed (a session's numbered events and their watchers, without the engine)", () => {
  it("numbers events 1, 2, ...; keeps the running turn whole however long, and only `replay` events of finished ones", () => {
    const feed = new SessionFeed("s", { replay: 3, behind: 100 });
    for (const t of ["a", "b", "c", "d"]) feed.publish(text(t));
    assert.equal(feed.seq, 4);
    assert.equal(codeOf(() => feed.watch(0)), "OUT_OF_RANGE", "event 1 left the buffer (3 kept)");
    feed.begin();
    for (let i = 0; i < 10; i++) feed.publish(text(`r${i}`));
    const w = feed.watch(undefined);
    assert.deepEqual(texts(feed.read(w)), ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"], "a watcher from now gets the running turn from its start, all of it");
    assert.equal(feed.settled, 4, "the history holds up to the event before the running turn");
    feed.finish();
    assert.equal(feed.settled, 14);
    assert.equal(codeOf(() => feed.watch(5)), "OUT_OF_RANGE", "once finished, the turn's events go like any others");
    assert.deepEqual(texts(feed.read(feed.watch(11))), ["r7", "r8", "r9"]);
    assert.equal(codeOf(() => feed.watch(15)), "OUT_OF_RANGE", "a seq not reached yet");
  });

  it("drops a watcher that falls `behind` events behind, and wakes one that waits", async () => {
    const feed = new SessionFeed("s", { replay: 100, behind: 2 });
    const slow = feed.watch(undefined);
    const quick = feed.watch(undefined);
    const woken = quick.wait(new AbortController().signal);
    feed.publish(text("a"));
    await woken;
    assert.deepEqual(texts(feed.read(quick)), ["a"]);
    feed.publish(text("b"));
    assert.equal(feed.watching, 2);
    feed.publish(text("c"));
    assert.equal(slow.dropped?.message, "This watcher fell 3 events behind session s (NANOLLM_WATCH_BEHIND_EVENTS allows 2) and was dropped; attach again with after_seq 0 to catch up.");
    assert.equal(codeOf(() => feed.read(slow)), "RESOURCE_EXHAUSTED");
    assert.equal(feed.watching, 1, "the quick one watches on");
    assert.deepEqual(texts(feed.read(quick)), ["b", "c"]);
  });
});

describe("TurnQueue (one writer at a time)", () => {
  it("runs turns in the order they came, hands over with no idle moment, refuses when told not to wait, and lets a waiting turn be cancelled", async () => {
    const holder = { id: "s", running: undefined as { turnId: string } | undefined };
    const queue = new TurnQueue(holder);
    const none = new AbortController().signal;
    await queue.enter({ turnId: "a" }, none, true);
    const order: string[] = [];
    const b = queue.enter({ turnId: "b" }, none, true).then(() => order.push("b"));
    const cancel = new AbortController();
    const c = queue.enter({ turnId: "c" }, cancel.signal, true);
    const d = queue.enter({ turnId: "d" }, none, true).then(() => order.push("d"));
    await assert.rejects(queue.enter({ turnId: "e" }, none, false), (e: NanoError) => e.code === "FAILED_PRECONDITION" && /already has a turn running; send again when it ends, or without --no-wait/.test(e.message));
    cancel.abort();
    await assert.rejects(c, (e: NanoError) => e.code === "CANCELLED");
    queue.leave();
    assert.equal(holder.running?.turnId, "b", "the next turn holds the session at once");
    await b;
    queue.leave();
    await d;
    assert.deepEqual(order, ["b", "d"]);
    queue.leave();
    assert.equal(holder.running, undefined);
  });
});
