// Probe: how much one continuous-batching step costs in our daemon, at 1 and N sessions.
// `node bench/dist/batchStep.js [big|tiny] [N] [threads]` — prints sessions per step and ms per step,
// the figure to compare with llama-batched-bench's per-step time (see the P3 row of `make bench`).
import { startDaemon } from "@nanollm/daemon";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { benchModel, type ModelName } from "./models.js";

const [name = "big", n = "16", threads = "1"] = process.argv.slice(2);
const sessions = Number(n);
const TOKENS = 32;

const daemon = await startDaemon({ modelPath: benchModel(name as ModelName), listen: "127.0.0.1:0", threads: Number(threads), batchThreads: Number(threads), parallel: sessions, ctx: 512, gpu: "cpu", kvCacheType: "f16", dataDir: undefined, log: () => {} });
const client = new NanoClient(daemon.address);
try {
  const host = await daemon.state.models.get("");
  const ids = await Promise.all(Array.from({ length: sessions }, () => client.createSession({ chatTemplate: "raw" })));
  const drain = async (id: string, text: string, max: number) => {
    for await (const ev of client.turn(id, text, { maxNewTokens: max })) void ev;
  };
  // Prefill first, so the timed part is decoding only.
  await Promise.all(ids.map((s, i) => drain(s.sessionId, `hello ${i}`, 1)));
  const before = { steps: host.pool.batcher.steps, carried: host.pool.batcher.carried };
  const t0 = performance.now();
  await Promise.all(ids.map((s, i) => drain(s.sessionId, `and more ${i}`, TOKENS)));
  const ms = performance.now() - t0;
  const steps = host.pool.batcher.steps - before.steps;
  const perStep = (host.pool.batcher.carried - before.carried) / steps;
  console.log(`${sessions} sessions, ${threads} thread(s): ${((sessions * TOKENS * 1000) / ms).toFixed(0)} tok/s aggregate, ${perStep.toFixed(2)} sessions/step, ${(ms / steps).toFixed(1)} ms/step`);
} finally {
  client.close();
  await daemon.close(100);
}
