// Probe: where a round of the native loop goes with N sessions decoding at once, in process (no
// gRPC): the llama_decode time per decode (from the loop's own counters) against wall time, and the
// time per round outside llama_decode. Compare with llama-batched-bench at the same -npl.
//   node bench/dist/loopProfile.js [sessions=4] [threads=1]
import { ModelHost } from "@nanollm/daemon/dist/engine/ModelHost.js";
import { benchModel } from "./models.js";

const n = Number(process.argv[2] ?? 4);
const threads = Number(process.argv[3] ?? 1);
const host = await ModelHost.load({ modelPath: benchModel("big"), gpu: "cpu", threads, batchThreads: threads, parallel: n, ctx: 512, kvCacheType: "f16", maxQueue: 64, log: () => {} });
const sampling = { maxNewTokens: 128, minNewTokens: 0, doSample: false, temperature: 1, topP: 1, topK: 0, repetitionPenalty: 1, seed: 0 };

async function reply(i: number): Promise<void> {
  const tokens = host.tokenize([{ kind: "text", text: `Story number ${i} begins here` }]);
  const lease = await host.pool.acquire(`s${i}`, new AbortController().signal);
  try {
    await lease.prepare(tokens);
    let k = 0;
    for await (const _ of lease.decode(tokens, sampling, { signal: new AbortController().signal, lockstep: false })) if (++k >= 128) break;
  } finally {
    lease.release();
  }
}

await Promise.all(Array.from({ length: n }, (_, i) => reply(i))); // warm-up
const before = host.loopStats();
const started = performance.now();
await Promise.all(Array.from({ length: n }, (_, i) => reply(i + 100)));
const wall = performance.now() - started;
const after = host.loopStats();
const decodes = after.decodes - before.decodes;
const ms = after.decodeMs - before.decodeMs;
const rounds = after.steps - before.steps;
console.log(
  `${n} sessions, ${threads} thread(s): ${((n * 127 * 1000) / wall).toFixed(0)} tok/s; ${rounds} rounds, ${decodes} decodes; ` +
    `llama_decode ${ms.toFixed(0)} of ${wall.toFixed(0)} ms (${(ms / decodes).toFixed(2)} ms each), ${((wall - ms) / rounds).toFixed(2)} ms a round outside it`,
);
await host.dispose();
