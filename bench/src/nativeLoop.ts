// Probe: the floor of any JS driver of node-llama-cpp, and whether batching pays. A bare loop of
// its native calls (initBatch, addToBatch, decodeBatch, sampleToken) on the daemon's own context,
// nothing else on the event loop: one stream, then N sequences as one N-token batch per step vs N
// one-token decodes (what DecodeCosts chooses between). Compare the first line with llama-bench tg.
// `node bench/dist/nativeLoop.js [big|tiny] [N] [threads]`
import { startDaemon } from "@nanollm/daemon";
import { benchModel, type ModelName } from "./models.js";
import { median } from "./report.js";

const [name = "big", n = "2", threads = "1"] = process.argv.slice(2);
const N = Number(n);

// node-llama-cpp internals (pinned 3.22.1), reached through the daemon's model host.
interface Native {
  initBatch(size: number): void;
  addToBatch(seq: number, pos: number, tokens: Uint32Array, logits: Uint32Array): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(at: number, sampler: unknown): Promise<number>;
  setThreads(n: number): void;
}
interface Internals {
  context: { _ctx: Native; getSequence(): { _sequenceId: number } };
  model: { _llama: { _bindings: { AddonSampler: new (m: unknown) => { applyConfig(c: object): void } } }; _model: unknown };
}

const daemon = await startDaemon({ modelPath: benchModel(name as ModelName), listen: "127.0.0.1:0", threads: Number(threads), batchThreads: Number(threads), parallel: Math.max(N, 1), ctx: 1024, gpu: "cpu", kvCacheType: "f16", dataDir: undefined, log: () => {} });
try {
  const host = (await daemon.state.models.get("")) as unknown as Internals;
  const ctx = host.context._ctx;
  ctx.setThreads(Number(threads));
  const seqs = Array.from({ length: N }, () => host.context.getSequence()._sequenceId);
  const pos = seqs.map(() => 0);
  const sampler = new host.model._llama._bindings.AddonSampler(host.model._model);
  sampler.applyConfig({ temperature: 0, topK: 0, topP: 1, seed: 0 });
  const one = async (i: number) => {
    ctx.initBatch(1);
    const [at] = ctx.addToBatch(seqs[i]!, pos[i]!++, Uint32Array.of(5 + i), Uint32Array.of(0));
    await ctx.decodeBatch();
    await ctx.sampleToken(at!, sampler);
  };
  const batched = async () => {
    ctx.initBatch(N);
    const at = seqs.map((s, i) => ctx.addToBatch(s, pos[i]!++, Uint32Array.of(5 + i), Uint32Array.of(0))[0]!);
    await ctx.decodeBatch();
    for (const a of at) await ctx.sampleToken(a, sampler);
  };
  const split = async () => {
    for (let i = 0; i < N; i++) await one(i);
  };
  // Per-step time over blocks of 16 steps, alternating, so both ways see the same noise.
  const ways: [string, () => Promise<void>, number][] = [["1 stream", () => one(0), 1], [`${N} as one batch`, batched, N], [`${N} one by one`, split, N]];
  const ms = new Map<string, number[]>(ways.map(([k]) => [k, []]));
  for (let rep = 0; rep < 6; rep++) {
    for (const [k, f] of ways) {
      const t = performance.now();
      for (let j = 0; j < 16; j++) await f();
      ms.get(k)!.push((performance.now() - t) / 16);
    }
  }
  for (const [k, , tokens] of ways) {
    const m = median(ms.get(k)!);
    console.log(`${k}: ${m.toFixed(2)} ms per step, ${((tokens * 1000) / m).toFixed(1)} tok/s`);
  }
} finally {
  await daemon.close(100);
}
