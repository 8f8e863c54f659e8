// Probe: where a decode step's time goes in our daemon: llama_decode itself (native, timed by
// wrapping node-llama-cpp's internal context), sampling, and everything else (JS, scheduling).
// Then the prefill speed of one long prompt.
// `node bench/dist/stepProfile.js [big|tiny] [sessions] [threads] [tokens] [batch threads]`
import { startDaemon } from "@nanollm/daemon";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { benchModel, type ModelName } from "./models.js";
import { words } from "./text.js";

const [name = "big", n = "1", threads = "1", tokens = "128", batchThreads = threads] = process.argv.slice(2);
const sessions = Number(n);
const TOKENS = Number(tokens);

const daemon = await startDaemon({ modelPath: benchModel(name as ModelName), listen: "127.0.0.1:0", threads: Number(threads), batchThreads: Number(batchThreads), parallel: Math.max(sessions, 4), ctx: 1024, gpu: "cpu", kvCacheType: "f16", dataDir: undefined, log: () => {} });
const client = new NanoClient(daemon.address);
const time = { decode: 0, decodes: 0, sample: 0, samples: 0 };
let lastSample = 0;
const gaps: number[] = [];
try {
  const host = await daemon.state.models.get("");
  // Internal access, for this probe only: node-llama-cpp's native context object, whose methods
  // (possibly wrapped already by the daemon) are wrapped once more with timers.
  const inner = (host as unknown as { context: { _ctx: Record<string, (...a: unknown[]) => Promise<unknown>> } }).context._ctx;
  const timed = (fn: string, key: "decode" | "sample", count: "decodes" | "samples") => {
    const original = inner[fn]!;
    Object.defineProperty(inner, fn, {
      configurable: true,
      writable: true,
      value: async (...args: unknown[]) => {
        const t = performance.now();
        if (key === "decode" && lastSample > 0) gaps.push(t - lastSample);
        try {
          return await original.apply(inner, args);
        } finally {
          time[key] += performance.now() - t;
          if (key === "sample") lastSample = performance.now();
          time[count]++;
        }
      },
    });
  };
  timed("decodeBatch", "decode", "decodes");
  timed("sampleToken", "sample", "samples");
  const ids = await Promise.all(Array.from({ length: sessions }, () => client.createSession({ chatTemplate: "raw" })));
  const drain = async (id: string, text: string, max: number) => {
    for await (const ev of client.turn(id, text, { maxNewTokens: max, minNewTokens: max })) void ev;
  };
  await Promise.all(ids.map((s, i) => drain(s.sessionId, `hello ${i}`, 4)));
  Object.assign(time, { decode: 0, decodes: 0, sample: 0, samples: 0 });
  const t0 = performance.now();
  await Promise.all(ids.map((s, i) => drain(s.sessionId, `and more ${i}`, TOKENS)));
  const ms = performance.now() - t0;
  const steps = time.decodes;
  console.log(`${sessions} session(s), ${threads} thread(s), ${TOKENS} tokens each: ${((sessions * TOKENS * 1000) / ms).toFixed(1)} tok/s; ` +
    `per step ${(ms / steps).toFixed(2)} ms = llama_decode ${(time.decode / steps).toFixed(2)} + sampling ${(time.sample / steps).toFixed(2)} (${(time.samples / steps).toFixed(1)} calls) + other ${((ms - time.decode - time.sample) / steps).toFixed(2)}`);
  gaps.sort((a, b) => a - b);
  const q = (f: number) => gaps[Math.floor(f * (gaps.length - 1))]!.toFixed(3);
  console.log(`sample resolved → next decode call: p10 ${q(0.1)} p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} ms`);
  const long = await client.createSession({ chatTemplate: "raw" });
  for await (const ev of client.turn(long.sessionId, words(400, 7), { maxNewTokens: 1 })) {
    if (ev.kind?.$case === "end") {
      const st = ev.kind.end.stats!;
      console.log(`prefill of ${st.evaluatedTokens} tokens at ${batchThreads} batch thread(s): ${st.prefillMs.toFixed(0)} ms (${((st.evaluatedTokens * 1000) / st.prefillMs).toFixed(0)} tok/s)`);
    }
  }
} finally {
  client.close();
  await daemon.close(100);
}
