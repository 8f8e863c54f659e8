// P3: aggregate decode with N sessions generating at once, ours vs llama-server under the same load
// (interleaved per N) and vs llama-batched-bench at the same parallelism.
import { batchedBench } from "../peerTools.js";
import { compare, median, type Row } from "../report.js";
import { words } from "../text.js";
import { withBoth, type Figure } from "./context.js";

const LEVELS = [1, 2, 4, 8, 16];
const PROMPT_WORDS = 16;
const N_GEN = 64;

interface Level {
  n: number;
  ours: number[];
  /** Ours in the generation phase only (from the last session's first token), as llama-batched-bench's S_TG. */
  oursTg: number[];
  peer: number[];
  batched: number[];
}

export const p3Concurrent: Figure = async (ctx) => {
  const reps = ctx.quick ? 1 : 3;
  const levels: Level[] = LEVELS.map((n) => ({ n, ours: [], oursTg: [], peer: [], batched: [] }));
  await withBoth(ctx, { parallel: Math.max(...LEVELS), ctx: 512 }, async (ours, peer) => {
    await ours.turn(await ours.session("raw"), words(8, 99), 8);
    await peer.complete({ prompt: words(8, 99), nPredict: 8, cachePrompt: false });
    for (let rep = 0; rep < reps; rep++) {
      for (const level of levels) {
        const prompts = Array.from({ length: level.n }, (_, i) => words(PROMPT_WORDS, 100 * rep + i + 1));
        // Sessions exist before the clock starts; creating one is not part of the load.
        const ids = await Promise.all(prompts.map(() => ours.session("raw")));
        let t0 = performance.now();
        const o = await Promise.all(prompts.map((p, i) => ours.turn(ids[i]!, p, N_GEN)));
        const oursTps = sum(o.map((t) => t.stats.generatedTokens)) / ((performance.now() - t0) / 1000);
        // S_TG counts the steps after the prompts: from the moment every session has its first token.
        const genStart = Math.max(...o.map((t) => t.ttftMs));
        const oursTg = (sum(o.map((t) => t.stats.generatedTokens)) - o.length) / ((Math.max(...o.map((t) => t.wallMs)) - genStart) / 1000);
        await Promise.all(ids.map((id) => ours.client.deleteSession(id)));
        t0 = performance.now();
        const p = await Promise.all(prompts.map((prompt) => peer.complete({ prompt, nPredict: N_GEN, cachePrompt: false })));
        const peerTps = sum(p.map((c) => c.timings.predicted_n)) / ((performance.now() - t0) / 1000);
        // llama-batched-bench right after (the servers idle meanwhile), so all three see the same noise.
        const [b] = await batchedBench(ctx.model, ctx.threads, [level.n], PROMPT_WORDS, N_GEN);
        level.ours.push(oursTps);
        level.oursTg.push(oursTg);
        level.peer.push(peerTps);
        level.batched.push(b?.speedTg ?? NaN);
        ctx.log(`P3 rep ${rep + 1}/${reps}, ${level.n} sessions: ours ${oursTps.toFixed(1)} tok/s (generation phase ${oursTg.toFixed(1)}), llama-server ${peerTps.toFixed(1)} tok/s, ` +
          `llama-batched-bench S_TG ${(b?.speedTg ?? NaN).toFixed(1)} tok/s`);
      }
    }
  });
  const rows: Row[] = [];
  for (const l of levels) {
    rows.push(compare("P3", `aggregate decode, ${l.n} sessions`, "tok/s", median(l.ours), median(l.peer), "llama-server", { op: ">=", value: 1.0 }));
  }
  for (const l of levels) {
    rows.push(compare("P3", `generation phase, ${l.n} sessions`, "tok/s", median(l.oursTg), median(l.batched), "llama-batched-bench S_TG", { op: ">=", value: 0.9 }));
  }
  return { rows, raw: { promptWords: PROMPT_WORDS, nGen: N_GEN, levels } };
};

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
