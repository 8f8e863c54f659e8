// P1: single-stream decode speed, ours vs llama-server (interleaved) and vs llama-bench tg128.
import { llamaBenchTg } from "../peerTools.js";
import { compare, median } from "../report.js";
import { words } from "../text.js";
import os from "node:os";
import { OurDaemon } from "../OurDaemon.js";
import { withBoth, type Figure } from "./context.js";

const N_GEN = 128;

export const p1Decode: Figure = async (ctx) => {
  const reps = ctx.quick ? 1 : 9;
  const ours: number[] = [];
  const peer: number[] = [];
  const bench: number[] = [];
  // llama-bench runs inside the loop too (the servers idle meanwhile), so all three see the same noise.
  await withBoth(ctx, { parallel: 1, ctx: 1024 }, async (daemon, server) => {
    // One short warm-up each, so first-call costs (page faults, thread start) are not timed.
    await daemon.turn(await daemon.session("raw"), words(8, 99), 8);
    await server.complete({ prompt: words(8, 99), nPredict: 8, cachePrompt: false });
    for (let i = 0; i < reps; i++) {
      const prompt = words(16, i + 1);
      const t = await daemon.turn(await daemon.session("raw"), prompt, N_GEN);
      ours.push(t.stats.decodeTokensPerSecond);
      const p = await server.complete({ prompt, nPredict: N_GEN, cachePrompt: false });
      peer.push(p.timings.predicted_per_second);
      bench.push(await llamaBenchTg(ctx.model, ctx.threads, N_GEN, 1));
      ctx.log(`P1 rep ${i + 1}/${reps}: ours ${t.stats.decodeTokensPerSecond.toFixed(1)} tok/s, llama-server ` +
        `${p.timings.predicted_per_second.toFixed(1)} tok/s, llama-bench tg${N_GEN} ${bench[i]!.toFixed(1)} tok/s`);
    }
  });
  // The daemon's defaults (no thread flags: the loop measures 1 thread against every core), run
  // when this pass gives the peer every core, interleaved with llama-bench at that count.
  const defaults: number[] = [];
  if (ctx.threads === os.availableParallelism()) {
    const daemon = await OurDaemon.start({ model: ctx.model, threads: undefined, parallel: 1, ctx: 1024 });
    try {
      await daemon.turn(await daemon.session("raw"), words(8, 99), 8);
      for (let i = 0; i < reps; i++) {
        const t = await daemon.turn(await daemon.session("raw"), words(16, i + 1), N_GEN);
        defaults.push(t.stats.decodeTokensPerSecond);
        ctx.log(`P1 defaults rep ${i + 1}/${reps}: ours ${t.stats.decodeTokensPerSecond.toFixed(1)} tok/s`);
      }
    } finally {
      await daemon.stop();
    }
  }
  const o = median(ours);
  return {
    rows: [
      ...(defaults.length ? [compare("P1", "decode, 1 stream, default threads", "tok/s", median(defaults), median(bench), `llama-bench tg${N_GEN}`, { op: ">=", value: 0.97 })] : []),
      compare("P1", "decode, 1 stream", "tok/s", o, median(peer), "llama-server", { op: ">=", value: 1.0 }),
      compare("P1", "decode, 1 stream", "tok/s", o, median(bench), `llama-bench tg${N_GEN}`, { op: ">=", value: 0.97 }),
    ],
    raw: { nGen: N_GEN, ours, llamaServer: peer, llamaBench: bench, oursDefaultThreads: defaults },
  };
};
