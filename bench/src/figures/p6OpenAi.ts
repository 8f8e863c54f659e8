// P6: a 20-turn chat through the official `openai` client, which resends the whole conversation
// every turn: time to first token at turns 1/5/10/20, ours (/v1/chat/completions served by the
// daemon, matching the request against its sessions' KV caches) ÷ llama-server's own
// /v1/chat/completions (its slot prompt cache), and the prompt tokens each side reports as cached.
import OpenAI from "openai";
import { compare, type Row } from "../report.js";
import { words } from "../text.js";
import { withBoth, type Figure } from "./context.js";

const USER_WORDS = 70;
const REPLY_TOKENS = 40;
const REPORT_AT = [1, 5, 10, 20];

interface Side {
  ttftMs: number;
  promptTokens: number;
  cachedTokens: number | undefined;
}

interface TurnRecord {
  turn: number;
  ours: Side;
  peer: Side;
}

export const p6OpenAi: Figure = async (ctx) => {
  const turns = ctx.quick ? 5 : 20;
  const reps = ctx.quick ? 1 : 2;
  // Two sequences/slots: the warm-ups keep one, the chat the other, so no turn waits for a cache to be parked.
  const runs = await withBoth(ctx, { parallel: 2, ctx: 4096, http: true }, async (ours, peer) => {
    const oursClient = new OpenAI({ baseURL: `${ours.httpBase!}/v1`, apiKey: "unused", maxRetries: 0 });
    const peerClient = new OpenAI({ baseURL: `${peer.base}/v1`, apiKey: "unused", maxRetries: 0 });
    const out: TurnRecord[][] = [];
    for (let rep = 0; rep < reps; rep++) out.push(await chat(oursClient, peerClient, turns, rep, ctx.log));
    return out;
  });
  const best = (i: number, side: "ours" | "peer") => Math.min(...runs.map((r) => r[i]![side].ttftMs));
  const records = runs[0]!.map((first, i) => ({ ...first, ours: { ...first.ours, ttftMs: best(i, "ours") }, peer: { ...first.peer, ttftMs: best(i, "peer") } }));
  const rows: Row[] = records
    .filter((r) => REPORT_AT.includes(r.turn))
    .map((r, i) =>
      compare("P6", `TTFT turn ${r.turn}, openai client`, "ms", r.ours.ttftMs, r.peer.ttftMs, "llama-server /v1/chat/completions", { op: "<=", value: 1.0 },
        `cached prompt tokens ${r.ours.cachedTokens ?? "?"}/${r.ours.promptTokens} (ours), ${r.peer.cachedTokens ?? "?"}/${r.peer.promptTokens} (peer)` +
          (i === 0 && reps > 1 ? `; each turn's TTFT is the best of ${reps} chats, each side` : "")),
    );
  return { rows, raw: { userWords: USER_WORDS, replyTokens: REPLY_TOKENS, reps: runs } };
};

/** One chat, each side keeping its own conversation (its own replies), turn by turn in step. */
async function chat(ours: OpenAI, peer: OpenAI, turns: number, rep: number, log: (l: string) => void): Promise<TurnRecord[]> {
  // A different system prompt each rep, so neither side starts from the previous chat's cache.
  const system: OpenAI.Chat.ChatCompletionMessageParam = { role: "system", content: `Chat ${rep + 1}. You are a helpful AI assistant.` };
  const histories: Record<"ours" | "peer", OpenAI.Chat.ChatCompletionMessageParam[]> = { ours: [system], peer: [system] };
  // One short warm-up each, so turn 1 is not a first-call cost.
  for (const client of [ours, peer]) await client.chat.completions.create({ model: await modelOf(client), messages: [{ role: "user", content: words(8, 99) }], max_tokens: 8, temperature: 0 });
  const records: TurnRecord[] = [];
  for (let turn = 1; turn <= turns; turn++) {
    const user = words(USER_WORDS, 1000 * (rep + 1) + turn);
    histories.ours.push({ role: "user", content: user });
    histories.peer.push({ role: "user", content: user });
    const o = await streamTurn(ours, await modelOf(ours), histories.ours);
    const p = await streamTurn(peer, await modelOf(peer), histories.peer);
    histories.ours.push({ role: "assistant", content: o.reply });
    histories.peer.push({ role: "assistant", content: p.reply });
    log(`P6 chat ${rep + 1}, turn ${turn}/${turns}: TTFT ours ${o.side.ttftMs.toFixed(0)} ms (cached ${o.side.cachedTokens}/${o.side.promptTokens}), ` +
      `llama-server ${p.side.ttftMs.toFixed(0)} ms (cached ${p.side.cachedTokens}/${p.side.promptTokens})`);
    records.push({ turn, ours: o.side, peer: p.side });
  }
  return records;
}

const models = new WeakMap<OpenAI, Promise<string>>();

/** The model id the server lists first (llama-server names it after the file). */
function modelOf(client: OpenAI): Promise<string> {
  let id = models.get(client);
  if (!id) models.set(client, (id = client.models.list().then((l) => l.data[0]?.id ?? "model")));
  return id;
}

/** One greedy streamed turn: the time to the first text, the reply, and the usage the server reports. */
export async function streamTurn(client: OpenAI, model: string, messages: OpenAI.Chat.ChatCompletionMessageParam[], maxTokens = REPLY_TOKENS): Promise<{ side: Side; reply: string }> {
  const started = performance.now();
  let ttftMs = 0;
  let reply = "";
  let usage: OpenAI.CompletionUsage | undefined;
  const stream = await client.chat.completions.create({ model, messages, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    const text = chunk.choices[0]?.delta.content;
    if (text) {
      ttftMs ||= performance.now() - started;
      reply += text;
    }
    usage = chunk.usage ?? usage;
  }
  return { side: { ttftMs: ttftMs || performance.now() - started, promptTokens: usage?.prompt_tokens ?? 0, cachedTokens: usage?.prompt_tokens_details?.cached_tokens }, reply };
}
