import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inProcessDaemon, turn } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";

/** Three sessions, two turns each, all at once: prompt batches and multi-session decode steps. */
async function replies(batchThreads: number | "adaptive"): Promise<number[][]> {
  const adaptive = batchThreads === "adaptive";
  const d = await inProcessDaemon(tinyModel(), { parallel: 3, ...(adaptive ? { adaptiveThreads: true } : { batchThreads }) });
  try {
    const info = await d.client.serverInfo();
    if (!adaptive) assert.equal(info.batchThreads, batchThreads, "the daemon reports the batch thread count it runs with");
    const sessions = await Promise.all([0, 1, 2].map(() => d.client.createSession({ chatTemplate: "chat-ml" })));
    const out: number[][] = [];
    for (const text of ["Tell me a story about a cat and a very long river", "And then?"]) {
      const r = await Promise.all(sessions.map((s, i) => turn(d.client, s.sessionId, `${text} (${i})`, 24)));
      out.push(...r.map((x) => x.ids));
    }
    if (adaptive) {
      const stats = (await d.daemon.state.models.get("")).loopStats();
      assert.ok([1, info.threads].includes(stats.stepThreads), `one-token steps ran on 1 or ${info.threads} threads, not ${stats.stepThreads}`);
    }
    return out;
  } finally {
    await d.stop();
  }
}

describe("separate thread counts for decode steps and batches", () => {
  it("gives the same greedy replies as one thread count for everything", async () => {
    const same = await replies(1);
    const split = await replies(2);
    assert.equal(same.length, 6);
    assert.ok(same.every((ids) => ids.length > 0));
    assert.deepEqual(split, same);
  });

  it("gives the same greedy replies when the loop chooses the counts by measurement", async () => {
    assert.deepEqual(await replies("adaptive"), await replies(1));
  });
});
