// P2: a long chat. Time to first token per turn with each side's cache (ours: the session's KV;
// llama-server: cache_prompt on one slot), tokens evaluated per turn, and stateless re-prefill.
import { Role, type Message } from "@nanollm/shared";
import type { LlamaServer } from "../LlamaServer.js";
import type { OurDaemon } from "../OurDaemon.js";
import { compare, type Row } from "../report.js";
import { chatmlReplyEnd, chatmlTurn, words } from "../text.js";
import { withBoth, type Figure } from "./context.js";

// ~70 words of user text (one token each) + template tokens + a 40-token reply ≈ 110 new tokens a turn.
const USER_WORDS = 70;
const REPLY_TOKENS = 40;
const SYSTEM = "You are a helpful AI assistant.";
const REPORT_AT = [1, 5, 10, 20];

interface TurnRecord {
  turn: number;
  ours: { ttftMs: number; serverTtftMs: number; inputTokens: number; evaluatedTokens: number; newTokens: number };
  peer: { ttftMs: number; promptN: number; cacheN: number; promptMs: number };
  stateless?: { oursTtftMs: number; oursEvaluated: number; peerTtftMs: number; peerPromptN: number };
}

export const p2Chat: Figure = async (ctx) => {
  const turns = ctx.quick ? 5 : 20;
  const reps = ctx.quick ? 1 : 2;
  // Two sequences/slots: the long chat keeps one, the stateless contrast uses the other. The chat
  // runs `reps` times (a single turn is one sample on a noisy machine); each turn's TTFT is the
  // best of the reps on each side.
  const runs = await withBoth(ctx, { parallel: 2, ctx: 4096 }, async (ours, peer) => {
    const out: TurnRecord[][] = [];
    for (let rep = 0; rep < reps; rep++) {
      const session = await ours.session("chat-ml", systemPrompt(rep));
      out.push(await chat(ours, session, peer, turns, rep, ctx.log));
      await ours.client.deleteSession(session);
    }
    return out;
  });
  const records = runs[0]!.map((first, i) => ({
    ...first,
    ours: { ...first.ours, ttftMs: Math.min(...runs.map((r) => r[i]!.ours.ttftMs)) },
    peer: { ...first.peer, ttftMs: Math.min(...runs.map((r) => r[i]!.peer.ttftMs)) },
  }));
  const rows: Row[] = [];
  const reported = records.filter((r) => REPORT_AT.includes(r.turn));
  reported.forEach((r, i) => {
    rows.push(compare("P2", `TTFT turn ${r.turn}, cached`, "ms", r.ours.ttftMs, r.peer.ttftMs, "llama-server prompt cache", { op: "<=", value: 1.0 },
      i === 0 && reps > 1 ? `each turn's TTFT is the best of ${reps} chats, each side` : undefined));
  });
  reported.forEach((r, i) => {
    rows.push({
      ...compare("P2", `tokens evaluated turn ${r.turn} (${r.ours.newTokens} new)`, "tokens", r.ours.evaluatedTokens, r.peer.promptN, "llama-server prompt cache", null),
      ratio: r.ours.evaluatedTokens / r.ours.newTokens, goal: { op: "<=", value: 1.0 }, met: r.ours.evaluatedTokens <= r.ours.newTokens,
      ...(i === 0 ? { note: "ratio here is ours ÷ the turn's new tokens; the peer column is what llama-server evaluated (it re-tokenizes the prompt)" } : {}),
    });
  });
  for (const r of records) {
    if (!r.stateless) continue;
    const s = r.stateless;
    rows.push(compare("P2", `TTFT turn ${r.turn}, stateless re-prefill`, "ms", s.oursTtftMs, s.peerTtftMs, "llama-server no cache", null,
      `re-prefilled ${s.oursEvaluated} (ours) / ${s.peerPromptN} (peer) tokens; ours cached was ${(s.oursTtftMs / r.ours.ttftMs).toFixed(1)}× faster`));
  }
  return { rows, raw: { userWords: USER_WORDS, replyTokens: REPLY_TOKENS, reps: runs } };
};

// Each rep's system prompt differs from its first word, so the peer's slot (which still holds the
// previous chat) shares no more than the template's first tokens with it.
function systemPrompt(rep: number): string {
  return `Chat ${rep + 1}. ${SYSTEM}`;
}

async function chat(ours: OurDaemon, session: string, peer: LlamaServer, turns: number, rep: number, log: (l: string) => void): Promise<TurnRecord[]> {
  // One short warm-up each on the stateless sequence/slot, so turn 1 is not a first-call cost.
  const warm = await ours.session("raw");
  await ours.turn(warm, words(8, 99), 8);
  await ours.client.deleteSession(warm);
  await peer.complete({ prompt: words(8, 99), nPredict: 8, cachePrompt: false, idSlot: 1 });
  const system = systemPrompt(rep);
  const history: Message[] = [];
  let peerPrompt = `<|im_start|>system\n${system}<|im_end|>\n`;
  let prev: { inputTokens: number; generated: number } | undefined;
  const records: TurnRecord[] = [];
  for (let turn = 1; turn <= turns; turn++) {
    const user = words(USER_WORDS, 1000 * (rep + 1) + turn);
    const o = await ours.turn(session, user, REPLY_TOKENS);
    peerPrompt += chatmlTurn(user);
    const p = await peer.complete({ prompt: peerPrompt, nPredict: REPLY_TOKENS, cachePrompt: true, idSlot: 0, stream: true });
    const s = o.stats;
    const newTokens = prev ? s.inputTokens - prev.inputTokens - prev.generated : s.inputTokens;
    const rec: TurnRecord = {
      turn,
      ours: { ttftMs: o.ttftMs, serverTtftMs: s.timeToFirstTokenMs, inputTokens: s.inputTokens, evaluatedTokens: s.evaluatedTokens, newTokens },
      peer: { ttftMs: p.ttftMs, promptN: p.timings.prompt_n, cacheN: p.timings.cache_n, promptMs: p.timings.prompt_ms },
    };
    if (rep === 0 && REPORT_AT.includes(turn)) rec.stateless = await stateless(ours, peer, history, user, peerPrompt, system);
    log(`P2 chat ${rep + 1}, turn ${turn}/${turns}: TTFT ours ${o.ttftMs.toFixed(0)} ms (evaluated ${s.evaluatedTokens}/${s.inputTokens}), ` +
      `llama-server ${p.ttftMs.toFixed(0)} ms (evaluated ${p.timings.prompt_n}, cached ${p.timings.cache_n})` +
      (rec.stateless ? `; stateless ours ${rec.stateless.oursTtftMs.toFixed(0)} ms, llama-server ${rec.stateless.peerTtftMs.toFixed(0)} ms` : ""));
    records.push(rec);
    prev = { inputTokens: s.inputTokens, generated: s.generatedTokens };
    history.push({ role: Role.ROLE_USER, text: user, tokenIds: [], images: [] }, { role: Role.ROLE_BOT, text: o.reply, tokenIds: o.replyTokenIds, images: [] });
    peerPrompt += chatmlReplyEnd(p.content);
  }
  return records;
}

/** The same turn with nothing cached: ours from a new session holding the history, the peer without cache_prompt. */
async function stateless(ours: OurDaemon, peer: LlamaServer, history: Message[], user: string, peerPrompt: string, system: string) {
  const fresh = await ours.session("chat-ml", system, history);
  const o = await ours.turn(fresh, user, REPLY_TOKENS);
  await ours.client.deleteSession(fresh);
  const p = await peer.complete({ prompt: peerPrompt, nPredict: REPLY_TOKENS, cachePrompt: false, idSlot: 1, stream: true });
  return { oursTtftMs: o.ttftMs, oursEvaluated: o.stats.evaluatedTokens, peerTtftMs: p.ttftMs, peerPromptN: p.timings.prompt_n };
}
