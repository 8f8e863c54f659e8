import { fail, StopReason, type GenerationParams, type TurnStats } from "@nanollm/shared";
import type { SequenceLease } from "../engine/SequenceLease.js";
import { resolveSampling } from "./params.js";
import { ReplyText } from "./ReplyText.js";
import { TurnCalls, type CallSink } from "./TurnCalls.js";
import type { HistoryMessage, Session } from "./Session.js";

/** Longest user message accepted, in characters. */
export const MAX_MESSAGE_CHARS = 1_000_000;

/** End-of-turn markers the reference also strips from replies when a model writes them as text. */
const GLOBAL_STOPS = ["</s>", "<|endoftext|>", "<|im_end|>", "<eos>", "<|end_of_text|>", "<|eot_id|>"];

/** Where a turn's events go as they happen; each resolves once the client can take more. */
export interface TurnSink extends CallSink {
  text(text: string, tokenIds: number[]): Promise<void>;
  wrapped(info: { droppedMessages: number; droppedTokens: number; keptMessages: number }): Promise<void>;
}

export interface TurnResult {
  stopReason: StopReason;
  stats: TurnStats;
  reply: string;
}

/**
 * One chat turn, start to end: render the history plus the new user message, reuse the cached
 * prefix, evaluate only new tokens, sample until a stop, record the exact reply ids.
 */
export async function runTurn(session: Session, turn: TurnInput, sink: TurnSink): Promise<TurnResult> {
  if (session.running) throw fail.precondition(`Session ${session.id} already has a turn running; wait for it to end or cancel it.`);
  const abort = new AbortController();
  session.running = { turnId: turn.turnId, abort };
  turn.signal.addEventListener("abort", () => abort.abort(), { once: true });
  if (turn.signal.aborted) abort.abort();
  try {
    return await generateTurn(session, turn.text, turn.params, abort.signal, sink);
  } finally {
    session.running = undefined;
  }
}

export interface TurnInput {
  turnId: string;
  text: string;
  params: GenerationParams | undefined;
  /** Aborted by the client's cancel, disconnect or deadline, or by shutdown. */
  signal: AbortSignal;
}

async function generateTurn(session: Session, text: string, params: GenerationParams | undefined, signal: AbortSignal, sink: TurnSink): Promise<TurnResult> {
  if (!text.trim()) throw fail.invalid("The message is empty; type some text to send.");
  if (text.length > MAX_MESSAGE_CHARS) throw fail.invalid(`The message is ${text.length} characters, more than the limit of ${MAX_MESSAGE_CHARS}; send it in parts.`);
  const sampling = resolveSampling(session.defaults, params);
  const host = session.host;
  const user: HistoryMessage = { role: "user", text, tokens: host.tokenizeText(text) };
  await session.settling;
  const prompt = await fitContext(session, user, sampling.maxNewTokens, sink);
  const started = performance.now();
  const lease = await host.pool.acquire(session.id, signal);
  try {
    const prefill = await lease.prefill(prompt, signal);
    const stops = [...(session.template.stop ?? []), ...GLOBAL_STOPS];
    const replyText = new ReplyText((ids) => host.detokenize(ids, prompt.slice(-8)), stops);
    const ids: number[] = [];
    let sent = 0;
    let stopReason = StopReason.STOP_REASON_MAX_TOKENS;
    let firstTokenAt = 0;
    const stopReason_ = (token: number, stopped: boolean) =>
      host.isEog(token)
        ? StopReason.STOP_REASON_EOS
        : stopped || stops.includes(host.tokenText(token))
          ? StopReason.STOP_REASON_STOP_STRING
          : signal.aborted
            ? StopReason.STOP_REASON_CANCELLED
            : ids.length >= sampling.maxNewTokens
              ? StopReason.STOP_REASON_MAX_TOKENS
              : prompt.length + ids.length >= session.contextSize - 2
                ? StopReason.STOP_REASON_CONTEXT_FULL
                : undefined;
    const decodeStart = performance.now();
    const calls = new TurnCalls(session.functions, sink);
    const grammar = sampling.grammar ? await host.grammar(sampling.grammar) : undefined;
    const tokens = lease.decode(prompt[prompt.length - 1]!, sampling, grammar);
    let insert: number[] | undefined;
    try {
      for (;;) {
        const step = await tokens.next(insert);
        insert = undefined;
        if (step.done) break;
        const token = step.value;
        firstTokenAt ||= performance.now();
        ids.push(token);
        const { delta, stopped } = replyText.update(ids);
        if (delta) {
          await sink.text(delta, ids.slice(sent));
          sent = ids.length;
        }
        const reason = stopReason_(token, stopped);
        // A call that now ends the reply runs, and its result joins the reply and the cache.
        const result = reason === undefined ? await calls.check(replyText.text) : undefined;
        if (result !== undefined) {
          const room = session.contextSize - 2 - prompt.length - ids.length;
          const extra = host.tokenizeText(result, true).slice(0, Math.max(0, room));
          ids.push(...extra);
          insert = [token, ...extra];
          const shown = replyText.update(ids).delta;
          calls.settled(replyText.text.length);
          if (shown) {
            await sink.text(shown, ids.slice(sent));
            sent = ids.length;
          }
        }
        if (reason !== undefined) {
          stopReason = reason;
          break;
        }
      }
    } finally {
      await tokens.return();
    }
    const decodeMs = performance.now() - decodeStart;
    const rest = replyText.flush();
    if (rest || sent < ids.length) await sink.text(rest, ids.slice(sent));
    recordReply(session, user, replyText.final, ids, stopReason);
    settle(session, lease);
    // The turn is durable before the client hears it ended.
    await session.persist();
    return {
      stopReason,
      reply: replyText.final,
      stats: {
        ...prefillStats(prefill),
        generatedTokens: ids.length,
        decodeMs,
        decodeTokensPerSecond: decodeMs > 0 ? (ids.length * 1000) / decodeMs : 0,
        timeToFirstTokenMs: (firstTokenAt || performance.now()) - started,
      },
    };
  } catch (err) {
    lease.release();
    throw err;
  }
}

/**
 * The prompt tokens for the history plus `user`, leaving room for the reply. When it does not fit,
 * a "wrap" session drops its oldest messages (starting again at a user turn) and says so; an
 * "error" session refuses.
 */
async function fitContext(session: Session, user: HistoryMessage, maxNewTokens: number, sink: TurnSink): Promise<number[]> {
  const ctx = session.contextSize;
  const room = Math.min(maxNewTokens, Math.floor(ctx / 4));
  let prompt = session.tokens([user]);
  const before = { start: session.windowStart, tokens: prompt.length };
  while (prompt.length + room > ctx && session.overflow === "wrap") {
    const next = session.history.findIndex((m, i) => i > session.windowStart && m.role === "user");
    if (next < 0) {
      session.windowStart = session.history.length;
      prompt = session.tokens([user]);
      break;
    }
    session.windowStart = next;
    prompt = session.tokens([user]);
  }
  if (prompt.length + room > ctx) {
    session.windowStart = before.start;
    throw fail.invalid(
      `The conversation needs ${prompt.length} tokens plus ${room} for the reply, more than the session's context of ${ctx}; shorten the message, lower max_new_tokens, reset the session or start the daemon with a larger --ctx.`,
    );
  }
  if (session.windowStart > before.start) {
    await sink.wrapped({ droppedMessages: session.windowStart - before.start, droppedTokens: before.tokens - prompt.length, keptMessages: session.history.length - session.windowStart });
  }
  return prompt;
}

/** Adds the exchange to the history; a reply cut short gets the end-of-reply token (rule 4). */
function recordReply(session: Session, user: HistoryMessage, text: string, ids: number[], reason: StopReason): void {
  const ended = reason === StopReason.STOP_REASON_EOS || reason === StopReason.STOP_REASON_STOP_STRING;
  const end = session.host.endOfReplyToken;
  const tokens = ended || end === undefined ? ids : [...ids, end];
  session.history.push(user, { role: "bot", text, tokens });
  session.updatedAt = Date.now();
}

/** Evaluates the reply's last token and the template glue after it, off the client's clock. */
function settle(session: Session, lease: SequenceLease): void {
  const tokens = session.tokens();
  session.settling = lease
    .sync(tokens, new AbortController().signal)
    .then(() => undefined)
    .catch(() => undefined)
    .finally(() => lease.release());
}

function prefillStats(p: { inputTokens: number; reusedTokens: number; evaluatedTokens: number; prefillMs: number }) {
  return {
    inputTokens: p.inputTokens,
    reusedTokens: p.reusedTokens,
    evaluatedTokens: p.evaluatedTokens,
    prefillMs: p.prefillMs,
    prefillTokensPerSecond: p.prefillMs > 0 ? (p.evaluatedTokens * 1000) / p.prefillMs : 0,
  };
}
