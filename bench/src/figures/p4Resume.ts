// P4: a 2k-token session is evicted (another session takes its only sequence); its next turn should
// resume from a saved state file rather than re-prefill. Measured from what the daemon does: if the
// resumed turn re-evaluates the history, state files are not implemented and no ratio is claimed.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Role } from "@nanollm/shared";
import { compare, type Row } from "../report.js";
import { words } from "../text.js";
import { withBoth, type Figure } from "./context.js";

const HISTORY_WORDS = 2000;
const REPLY = 8;
const NEXT = "and then what happened next";

export const p4Resume: Figure = async (ctx) => {
  const slotDir = fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-bench-slots-"));
  try {
    return await withBoth(ctx, { parallel: 1, ctx: 4096, slotSavePath: slotDir }, async (ours, peer) => {
      const long = words(HISTORY_WORDS, 4242);
      // Ours: fill session A, evict it with session B, then resume A.
      const a = await ours.session("raw");
      const first = await ours.turn(a, long, REPLY);
      await ours.turn(await ours.session("raw"), words(16, 7), REPLY);
      const resumed = await ours.turn(a, NEXT, REPLY);
      const cachedBefore = first.stats.inputTokens + first.stats.generatedTokens;
      const restored = resumed.stats.reusedTokens >= 0.9 * cachedBefore;
      // Baseline: the same conversation prefilled from nothing in a new session.
      const c = await ours.session("raw", undefined, [
        { role: Role.ROLE_USER, text: long, tokenIds: [], images: [] },
        { role: Role.ROLE_BOT, text: first.reply, tokenIds: first.replyTokenIds, images: [] },
      ]);
      const reprefill = await ours.turn(c, NEXT, REPLY);
      ctx.log(`P4 ours: resumed turn evaluated ${resumed.stats.evaluatedTokens}/${resumed.stats.inputTokens} tokens in ` +
        `${resumed.ttftMs.toFixed(0)} ms to first token; re-prefill ${reprefill.ttftMs.toFixed(0)} ms`);

      // llama-server, for reference: save slot 0, let another prompt take it, restore it, continue.
      const peerFirst = await peer.complete({ prompt: long, nPredict: REPLY, cachePrompt: true, idSlot: 0 });
      await peer.slotAction(0, "save", "bench-slot0.bin");
      await peer.complete({ prompt: words(16, 7), nPredict: REPLY, cachePrompt: true, idSlot: 0 });
      const restoreMs = await peer.slotAction(0, "restore", "bench-slot0.bin");
      const next = `${long}${peerFirst.content} ${NEXT}`;
      const peerResumed = await peer.complete({ prompt: next, nPredict: REPLY, cachePrompt: true, idSlot: 0, stream: true });
      const peerReprefill = await peer.complete({ prompt: next, nPredict: REPLY, cachePrompt: false, idSlot: 0, stream: true });
      const peerResumeMs = restoreMs + peerResumed.ttftMs;
      ctx.log(`P4 llama-server: restore ${restoreMs.toFixed(0)} ms + first token ${peerResumed.ttftMs.toFixed(0)} ms ` +
        `(evaluated ${peerResumed.timings.prompt_n}); re-prefill ${peerReprefill.ttftMs.toFixed(0)} ms`);

      const what = `after eviction our daemon evaluated ${resumed.stats.evaluatedTokens} of ${resumed.stats.inputTokens} tokens ` +
        `(${resumed.ttftMs.toFixed(0)} ms to first token; a fresh re-prefill took ${reprefill.ttftMs.toFixed(0)} ms)`;
      const rows: Row[] = [
        {
          ...compare("P4", "resume evicted 2k session ÷ re-prefill", "ms", restored ? resumed.ttftMs : null, reprefill.ttftMs,
            "ours re-prefill", { op: "<=", value: 0.2 }, restored ? `restored from state: ${what}` : what),
          ...(restored ? {} : { na: "n/a (not implemented)" }),
        },
        compare("P4", "llama-server slot restore ÷ its re-prefill", "ms", peerResumeMs, peerReprefill.ttftMs, "llama-server re-prefill", null,
          "reference only: what the peer's own save/restore gives (both columns are llama-server)"),
      ];
      const raw = {
        historyWords: HISTORY_WORDS, restored, ours: { first: first.stats, resumed: resumed.stats, resumedTtftMs: resumed.ttftMs, reprefill: reprefill.stats, reprefillTtftMs: reprefill.ttftMs },
        peer: { restoreMs, resumedTtftMs: peerResumed.ttftMs, resumedPromptN: peerResumed.timings.prompt_n, reprefillTtftMs: peerReprefill.ttftMs },
      };
      return { rows, raw };
    });
  } finally {
    fs.rmSync(slotDir, { recursive: true, force: true });
  }
};
