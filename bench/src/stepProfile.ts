// Probe: where a decode step's time goes in our daemon: llama_decode itself (native, timed by
// wrapping node-llama-cpp's internal context), sampling, and everything else (JS, scheduling).
// `node bench/dist/stepProfile.js [big|tiny] [sessions] [threads] [tokens]`
import { startDaemon } from "@nanollm/daemon";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { benchModel, type ModelName } from "./models.js";

const [name = "big", n = "1", threads = "1", tokens = "128"] = process.argv.slice(2);
const sessions = Number(n);
const TOKENS = Number(tokens);

const daemon = await startDaemon({ modelPath: benchModel(name as ModelName), listen: "127.0.0.1:0", threads: Number(threads), batchThreads: Number(threads), parallel: Math.max(sessions, 4), ctx: 1024, gpu: "cpu", kvCacheType: "f16", dataDir: undefined, log: () => {} });
const client = new NanoClient(daemon.address);
const time = { decode: 0, decodes: 0, sample: 0, samples: 0 };
try {
  const host = await daemon.state.models.get("");
  // Internal access, for this probe only: node-llama-cpp's native context object.
  const context = (host as unknown as { context: { _ctx: Record<string, unknown> } }).context;
  const inner = context._ctx;
  const timed = (fn: string, key: "decode" | "sample") => async (...args: unknown[]) => {
    const t = performance.now();
    try {
      return await (inner[fn] as (...a: unknown[]) => Promise<unknown>).apply(inner, args);
    } finally {
      time[key] += performance.now() - t;
      time[key === "decode" ? "decodes" : "samples"]++;
    }
  };
  const decodeBatch = timed("decodeBatch", "decode");
  const sampleToken = timed("sampleToken", "sample");
  context._ctx = new Proxy(inner, {
    get: (o, k) => (k === "decodeBatch" ? decodeBatch : k === "sampleToken" ? sampleToken : typeof o[k as string] === "function" ? (o[k as string] as () => unknown).bind(o) : o[k as string]),
  });
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
} finally {
  client.close();
  await daemon.close(100);
}
