// P8: what watchers cost the generating stream: decode speed with 8 clients attached to the
// session (Attach) ÷ with none, interleaved rep by rep.
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { compare, median } from "../report.js";
import { words } from "../text.js";
import { OurDaemon } from "../OurDaemon.js";
import type { Figure } from "./context.js";

const N_GEN = 256;
const WATCHERS = 8;

export const p8Watchers: Figure = async (ctx) => {
  const reps = ctx.quick ? 1 : 7;
  const alone: number[] = [];
  const watched: number[] = [];
  const daemon = await OurDaemon.start({ model: ctx.model, threads: ctx.threads, parallel: 1, ctx: 2048 });
  // Each watcher on a connection of its own, as separate clients would be.
  const clients = Array.from({ length: WATCHERS }, () => new NanoClient(daemon.client.host));
  try {
    await daemon.turn(await daemon.session("raw"), words(8, 99), 8);
    for (let i = 0; i < reps; i++) {
      const a = await daemon.turn(await daemon.session("raw"), words(16, i + 1), N_GEN);
      alone.push(a.stats.decodeTokensPerSecond);
      const session = await daemon.session("raw");
      const stop = new AbortController();
      const seen = clients.map(async (c) => {
        let tokens = 0;
        for await (const e of c.attach(session, undefined, stop.signal)) {
          if (e.kind?.$case === "text") tokens += e.kind.text.tokenIds.length;
          if (e.kind?.$case === "end") break;
        }
        return tokens;
      });
      // Attach is a server stream: give the watchers a moment to be registered before the turn starts.
      await new Promise((r) => setTimeout(r, 200));
      const w = await daemon.turn(session, words(16, i + 1), N_GEN);
      const got = await Promise.all(seen);
      if (got.some((n) => n !== w.replyTokenIds.length)) throw new Error(`a watcher missed tokens: ${got.join(", ")} of ${w.replyTokenIds.length}`);
      watched.push(w.stats.decodeTokensPerSecond);
      ctx.log(`P8 rep ${i + 1}/${reps}: alone ${a.stats.decodeTokensPerSecond.toFixed(1)} tok/s, ${WATCHERS} watchers ${w.stats.decodeTokensPerSecond.toFixed(1)} tok/s`);
    }
  } finally {
    for (const c of clients) c.close();
    await daemon.stop();
  }
  return {
    rows: [compare("P8", `decode, 1 stream, ${WATCHERS} watchers`, "tok/s", median(watched), median(alone), "no watchers", { op: ">=", value: 0.95 })],
    raw: { nGen: N_GEN, watchers: WATCHERS, alone, watched },
  };
};
