import { setImmediate } from "node:timers/promises";
import { fail, StopReason, type GenerationParams, type TurnStats } from "@nanollm/shared";
import type { SequenceLease } from "../engine/SequenceLease.js";
import type { PrefillStats } from "../engine/types.js";
import { appendAll } from "./appendAll.js";
import { checkImages, checkText } from "./limits.js";
import { readImages } from "./readImages.js";
import { resolveSampling } from "./params.js";
import { streamReply, type ReplyPart } from "./streamReply.js";
import { MAX_CALLS_PER_TURN, TurnCalls, type CallSink } from "./TurnCalls.js";
import type { HistoryMessage, Session } from "./Session.js";
import type { Held } from "./Journal.js";

/** Where a turn's events go as they happen; each resolves once the client can take more. */
export interface TurnSink extends CallSink {
  text(text: string, tokenIds: number[]): Promise<void>;
  wrapped(info: { droppedMessages: number; droppedTokens: number; keptMessages: number }): Promise<void>;
  /** The session's model is loading again before the turn runs (`fraction` of it read). */
  loading?(model: string, fraction: number): Promise<void>;
  /** The turn holds the session now (after its wait in the queue) and its message is valid: its first event may go out. */
  started?(): Promise<void>;
  /**
   * The turn's last event, while it still holds the session, so the next turn's events come after
   * it: its result, or the error it failed with.
   */
  ended?(outcome: { result: TurnResult } | { error: unknown }): Promise<void>;
}

export interface TurnResult {
  stopReason: StopReason;
  stats: TurnStats;
  reply: string;
  /** Tool calls the reply ended with, in "return" mode: the client runs them and sends the results. */
  toolCalls: ReturnedCall[];
}

/**
 * One chat turn, start to end: render the history plus the new user message, reuse the cached
 * prefix, evaluate only new tokens, sample until a stop, record the exact reply ids.
 */
export async function runTurn(session: Session, turn: TurnInput, sink: TurnSink): Promise<TurnResult> {
  await session.queue.enter({ turnId: turn.turnId }, turn.signal, turn.wait === true);
  const host = session.host;
  try {
    session.feed.begin();
    let outcome: { result: TurnResult } | { error: unknown };
    let held: Held | undefined;
    try {
      try {
        // An unloaded model (idle, or for memory) loads again first; the client hears its progress.
        // begin() counts the turn even when the load fails, so end() follows it in every case.
        await host.begin((fraction) => void sink.loading?.(host.facts.name, fraction));
        // A shared journal's lease: no other daemon generates in the session until it is released.
        held = await session.hold(turn.signal);
        outcome = { result: await generateTurn(session, held.lost ? { ...turn, signal: AbortSignal.any([turn.signal, held.lost]) } : turn, sink) };
      } finally {
        host.end();
      }
    } catch (error) {
      outcome = { error };
    }
    try {
      await held?.release();
    } catch (error) {
      if (!("error" in outcome)) outcome = { error };
    }
    // The history holds the turn now: its last event (with the session as it stands) follows.
    session.feed.finish();
    await sink.ended?.(outcome);
    if ("error" in outcome) throw outcome.error;
    return outcome.result;
  } finally {
    session.queue.leave();
  }
}

export interface TurnInput {
  turnId: string;
  text: string;
  params: GenerationParams | undefined;
  /** Images shown with the message (bytes the client read; PNG, JPEG, BMP, GIF). */
  images?: TurnImage[];
  /** The turn's one signal: aborted by the client's cancel, disconnect or deadline, or by shutdown. */
  signal: AbortSignal;
  /** The turn's new messages in place of a user message `text` (a stateless client's tool results). */
  lead?: HistoryMessage[];
  /** Stop strings of this turn, besides the template's. */
  stops?: string[];
  /**
   * "run" (the default): tool calls run in the daemon or the calling client and the reply goes on
   * after their results. "return": the first tool call ends the turn and is returned, its JSON not
   * streamed as text (the HTTP APIs, whose clients send the results in their next request).
   */
  toolCalls?: "run" | "return";
  /** Wait behind a turn already running on the session (one writer at a time) instead of failing at once. */
  wait?: boolean;
}

async function generateTurn(session: Session, turn: TurnInput, sink: TurnSink): Promise<TurnResult> {
  const signal = turn.signal;
  const returning = turn.toolCalls === "return";
  turn.lead?.forEach((m) => checkText("The message", m.text));
  const lead = turn.lead ?? [await userMessage(session, turn.text, turn.images ?? [])];
  await sink.started?.();
  const sampling = resolveSampling(session.defaults, turn.params);
  const host = session.host;
  await session.cacheSync;
  await session.loadImages(lead);
  const prompt = await fitContext(session, lead, sampling.maxNewTokens, sink);
  const started = performance.now();
  const running = session.running;
  if (running) running.waiting = true;
  const lease = await host.pool.acquire(session.id, signal).finally(() => running && (running.waiting = false));
  let syncStarted = false;
  try {
    const prepared = performance.now();
    const prefill = await lease.prepare(prompt);
    // Inline calls are the daemon's own convention; a client that runs its tools expects tool calls.
    const calls = new TurnCalls(session.functions, sink, !returning);
    // One bot message, or several when the model calls tools the template delimits: each call's
    // result becomes a tool message, and the bot turn resumes after it.
    const exchange: HistoryMessage[] = [...lead];
    const returned: ReturnedCall[] = [];
    let input = prompt;
    let part: ReplyPart;
    let generated = 0;
    let firstTokenAt = 0;
    let decodeMs = 0;
    let steps = 0;
    for (let round = 0; ; round++) {
      part = await streamReply({ session, lease, prompt: input, sampling, signal, calls, stops: turn.stops ?? [], hideCalls: returning, text: (delta, ids) => sink.text(delta, ids) });
      generated += part.ids.length;
      firstTokenAt ||= part.firstTokenAt;
      decodeMs += part.decodeMs;
      steps += Math.max(0, part.ids.length - 1);
      exchange.push(botMessage(session, part));
      const found = round < MAX_CALLS_PER_TURN ? toolCallIn(session, part) : undefined;
      if (found === undefined) break;
      if (returning) {
        const call = calls.parse(found.json);
        if (call) returned.push({ ...call, before: found.before });
        break;
      }
      const response = await calls.toolCall(found.json);
      exchange.push({ role: "tool", text: response, tokens: [...(await session.text.prepare(response))] });
      const next = session.tokens(exchange);
      // No room left to answer after the tool response: the turn ends with what it has.
      if (next.length + 16 >= session.contextSize) break;
      input = next;
      await lease.prepare(input);
    }
    const before = { history: session.history, windowStart: session.windowStart, updatedAt: session.updatedAt };
    session.history = appendAll(session.history.slice(), exchange);
    session.updatedAt = Date.now();
    syncStarted = true;
    syncCache(session, lease);
    // The turn is durable before the client hears it ended; one the journal could not take is
    // undone, so the history holds no turn the client was told failed (the cache is realigned by
    // the next turn's prepare).
    try {
      await session.persist();
    } catch (err) {
      Object.assign(session, before);
      throw err;
    }
    return {
      stopReason: part.stopReason,
      reply: returned.length > 0 ? returned[0]!.before : part.text,
      toolCalls: returned,
      stats: {
        // The prompt's evaluation ends with the first token (the same llama_decode gives it).
        ...prefillStats(prefill, (firstTokenAt || performance.now()) - prepared),
        generatedTokens: generated,
        decodeMs,
        decodeTokensPerSecond: decodeMs > 0 ? (steps * 1000) / decodeMs : 0,
        timeToFirstTokenMs: (firstTokenAt || performance.now()) - started,
      },
    };
  } catch (err) {
    // After the cache sync started, its own end releases the lease (the cache is still being written).
    if (!syncStarted) lease.release();
    throw err;
  }
}

/** A reply as the history keeps it; one cut short gets the end-of-reply token (rule 4). */
function botMessage(session: Session, part: ReplyPart): HistoryMessage {
  const ended = part.stopReason === StopReason.STOP_REASON_EOS || part.stopReason === StopReason.STOP_REASON_STOP_STRING;
  const end = session.host.endOfReplyToken;
  return { role: "bot", text: part.text, tokens: ended || end === undefined ? part.ids : [...part.ids, end] };
}

/** A tool call handed back to the client ("return" mode), with the reply text before it. */
export interface ReturnedCall {
  name: string;
  argumentsJson: string;
  before: string;
}

/** An image sent with a turn; `offset` is where it stands in the text, in code points (0: before it). */
export interface TurnImage {
  data: Uint8Array;
  name: string;
  offset?: number;
}

async function userMessage(session: Session, text: string, images: TurnImage[]): Promise<HistoryMessage> {
  if (!text.trim() && images.length === 0) throw fail.invalid("The message is empty; type some text to send.");
  checkText("The message", text);
  checkImages(images);
  const user: HistoryMessage = { role: "user", text, tokens: [...(await session.text.prepare(text))] };
  if (images.length > 0) user.images = await readImages(session.host, images.map((im) => ({ ...im, at: stringIndex(text, im.offset ?? 0, im.name) })), session.imageStore);
  return user;
}

/** The string index of code point `offset` in `text`; past its end is one sentence. */
function stringIndex(text: string, offset: number, name: string): number {
  const points = [...text];
  if (offset > points.length) throw fail.invalid(`The image ${name || "(unnamed)"} stands at character ${offset}, past the end of the ${points.length}-character text; give an offset from 0 to ${points.length}.`);
  return points.slice(0, offset).join("").length;
}

/** The JSON of a tool call the reply ended with (and the text before it), when the template delimits tool calls. */
function toolCallIn(session: Session, part: ReplyPart): { json: string; before: string } | undefined {
  const pattern = session.template.tool_call;
  if (!pattern || session.functions.empty || part.stopReason === StopReason.STOP_REASON_CANCELLED) return undefined;
  const withSpecials = session.host.detokenize(part.ids, undefined, true);
  const match = new RegExp(pattern, "s").exec(withSpecials);
  const json = match?.[1]?.trim();
  return json === undefined ? undefined : { json, before: withSpecials.slice(0, match!.index).trim() };
}

/**
 * The prompt tokens for the history plus the turn's `lead` messages, leaving room for the reply. When it does not fit,
 * a "wrap" session drops its oldest messages (starting again at a user turn) and says so; an
 * "error" session refuses. Texts are tokenized once, a piece at a time; the window is found by a
 * binary search over prompt lengths summed from remembered counts, with the event loop served
 * between probes.
 */
async function fitContext(session: Session, lead: HistoryMessage[], maxNewTokens: number, sink: TurnSink): Promise<number[]> {
  const ctx = session.contextSize;
  const room = Math.min(maxNewTokens, Math.floor(ctx / 4));
  await session.prepareText(lead);
  const before = { start: session.windowStart, tokens: session.tokenCount(lead) };
  const fits = async (start: number) => {
    session.windowStart = start;
    await session.prepareText(lead);
    return session.tokenCount(lead) + room <= ctx;
  };
  if (before.tokens + room > ctx && session.overflow === "wrap") {
    // Where the window may start: each later user turn, or after the whole history.
    const starts: number[] = [];
    session.history.forEach((m, i) => i > before.start && m.role === "user" && starts.push(i));
    starts.push(session.history.length);
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (await fits(starts[mid]!)) hi = mid;
      else lo = mid + 1;
      await setImmediate();
    }
    session.windowStart = starts[lo]!;
  }
  const used = session.tokenCount(lead);
  if (used + room > ctx) {
    session.windowStart = before.start;
    throw fail.invalid(
      `The conversation needs ${used} tokens plus ${room} for the reply, more than the session's context of ${ctx}; shorten the message, lower max_new_tokens, reset the session or start the daemon with a larger --ctx.`,
    );
  }
  const prompt = session.tokens(lead);
  if (session.windowStart > before.start) {
    await sink.wrapped({ droppedMessages: session.windowStart - before.start, droppedTokens: before.tokens - prompt.length, keptMessages: session.history.length - session.windowStart });
  }
  return prompt;
}

/** Evaluates the reply's last token and the template glue after it, off the client's clock. */
function syncCache(session: Session, lease: SequenceLease): void {
  const tokens = session.rendered();
  session.cacheSync = lease
    .sync(tokens, new AbortController().signal)
    .then(() => undefined)
    .catch(() => undefined)
    .finally(() => lease.release());
}

function prefillStats(p: PrefillStats, prefillMs: number) {
  return { ...p, prefillMs, prefillTokensPerSecond: prefillMs > 0 ? (p.evaluatedTokens * 1000) / prefillMs : 0 };
}
