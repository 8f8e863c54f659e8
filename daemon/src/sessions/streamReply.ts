import { StopReason } from "@nanollm/shared";
import type { SequenceLease } from "../engine/SequenceLease.js";
import type { Sampling } from "../engine/types.js";
import { appendAll } from "./appendAll.js";
import { ReplyText } from "./ReplyText.js";
import type { Session } from "./Session.js";
import type { TurnCalls } from "./TurnCalls.js";
import { toolGrammar } from "./toolGrammar.js";

/**
 * The shortest time between two text events of a reply. One event per token cost the daemon's
 * event loop (and the client) a gRPC message each, and on a 2-core machine that work slows
 * llama_decode on the other core (measured: 1 ms of event-loop work during a step made it
 * 0.7–1.5 ms longer). 16 ms is one frame of a 60 Hz screen; a first token, or any token that
 * comes slower than this, still goes out at once.
 */
const STREAM_INTERVAL_MS = 16;

/** End-of-turn markers the reference also strips from replies when a model writes them as text. */
const GLOBAL_STOPS = ["</s>", "<|endoftext|>", "<|im_end|>", "<eos>", "<|end_of_text|>", "<|eot_id|>"];

export interface ReplyPart {
  /** Every token of the reply as sampled, inserted function results included. */
  ids: number[];
  /** The visible text (before any stop string). */
  text: string;
  stopReason: StopReason;
  /** When the first token came (the prompt's evaluation ends there). */
  firstTokenAt: number;
  /** From the first token to the end: the time of the other ids.length − 1 steps. */
  decodeMs: number;
}

export interface ReplyInput {
  session: Session;
  lease: SequenceLease;
  /** The prompt; the part not in the cache yet (at least its last token) goes with the first step. */
  prompt: readonly number[];
  sampling: Sampling;
  signal: AbortSignal;
  calls: TurnCalls;
  /** Stop strings of this turn, besides the template's. */
  stops: readonly string[];
  /** Keep a tool call's text out of the stream (its caller returns the call itself). */
  hideCalls: boolean;
  text: (delta: string, tokenIds: number[]) => Promise<void>;
}

/**
 * Samples one bot message: streams text as it becomes safe to show, runs inline function calls
 * and splices their results into the reply and the cache, and stops at an end-of-generation
 * token, a stop string, the token limit, a full context or a cancel.
 */
export async function streamReply({ session, lease, prompt, sampling, signal, calls, stops: extraStops, hideCalls, text }: ReplyInput): Promise<ReplyPart> {
  const host = session.host;
  const stops = [...(session.template.stop ?? []), ...GLOBAL_STOPS, ...extraStops];
  const replyText = new ReplyText((ids, before) => host.detokenize(ids, before.length > 0 ? before : prompt.slice(-8)), stops);
  const ids: number[] = [];
  let sent = 0;
  let flushedAt = 0;
  const flush = async (delta: string) => {
    if (!delta && sent === ids.length) return;
    flushedAt = performance.now();
    await text(delta, ids.slice(sent));
    sent = ids.length;
  };
  // Checks that need no text, so the next step can go out before the text is worked out.
  const limitFor = (): StopReason | undefined => {
    if (signal.aborted) return StopReason.STOP_REASON_CANCELLED;
    if (ids.length >= sampling.maxNewTokens) return StopReason.STOP_REASON_MAX_TOKENS;
    if (prompt.length + ids.length >= session.contextSize - 2) return StopReason.STOP_REASON_CONTEXT_FULL;
    return undefined;
  };
  let firstTokenAt = 0;
  let stopReason = StopReason.STOP_REASON_MAX_TOKENS;
  // A request's own grammar rules the whole reply; otherwise a tool call's JSON is constrained
  // from the moment the template's opener appears.
  const tool = sampling.grammar ? undefined : await toolGrammar(session);
  let toolState: ReturnType<NonNullable<typeof tool>["state"]> | undefined;
  const grammar = sampling.grammar ? await host.grammar(sampling.grammar) : tool ? () => toolState : undefined;
  // In a plain reply the loop samples ahead freely: the text of a token is decoded and checked for
  // stop strings while the next ones are computed. Should a stop string end the reply, the
  // tokens sampled past it stay out of the history (the next turn's cache alignment drops
  // them). Function calls and tool grammars decide the next step from the text, so their tokens
  // come one at a time (lockstep).
  const early = !calls.watching && !tool;
  const tokens = lease.decode(prompt, sampling, { signal, lockstep: !early, grammar });
  const ask = (insert?: number[]) => {
    const next = tokens.next(insert);
    // Should the write fail, the step still settles; its rejection must not go unhandled.
    next.catch(() => undefined);
    return next;
  };
  let next = ask();
  // Text ready to show goes out while the next token is computed: the next step is dispatched to
  // llama.cpp's thread first (it goes on the next tick), the stream write follows a macrotask later.
  // A fast model's tokens are sent a few at a time, at most one event per STREAM_INTERVAL_MS.
  let unsent = "";
  try {
    for (;;) {
      if (unsent) {
        const wait = STREAM_INTERVAL_MS - (performance.now() - flushedAt);
        // Held text goes out when its window ends, unless the next token comes first.
        if (wait <= 0 || (await firstOf(next, wait)) === "timeout") {
          await new Promise((r) => setImmediate(r));
          await flush(unsent);
          unsent = "";
        }
      }
      const step = await next;
      if (step.done) {
        stopReason = signal.aborted || step.value === "cancelled" ? StopReason.STOP_REASON_CANCELLED : step.value === "ctx" ? StopReason.STOP_REASON_CONTEXT_FULL : StopReason.STOP_REASON_MAX_TOKENS;
        break;
      }
      const token = step.value;
      firstTokenAt ||= performance.now();
      ids.push(token);
      const eog = host.isEog(token);
      const limit = eog ? undefined : limitFor();
      if (early && !eog && limit === undefined) next = ask();
      const { delta, stopped } = replyText.update(ids);
      if (!(hideCalls && toolState)) unsent += delta;
      const reason = eog ? StopReason.STOP_REASON_EOS : stopped || stops.includes(host.tokenText(token)) ? StopReason.STOP_REASON_STOP_STRING : limit;
      if (reason !== undefined) {
        stopReason = reason;
        break;
      }
      if (tool && !toolState && host.detokenize(ids.slice(-8), undefined, true).endsWith(tool.opener)) {
        toolState = tool.state();
        // An opener that is plain text (not a control token) is part of the hidden call too.
        if (hideCalls && unsent.endsWith(tool.opener)) unsent = unsent.slice(0, -tool.opener.length);
      }
      let insert: number[] | undefined;
      if (calls.watching) {
        // A call that now ends the reply runs, and its result joins the reply and the cache; the
        // text before it goes out first.
        if (unsent) await flush(unsent);
        unsent = "";
        const result = await calls.check(replyText.text);
        if (result !== undefined) {
          const room = session.contextSize - 2 - prompt.length - ids.length;
          const extra = host.tokenizeText(result, true).slice(0, Math.max(0, room));
          appendAll(ids, extra);
          insert = [token, ...extra];
          const shown = replyText.update(ids).delta;
          calls.handledUpTo(replyText.text.length);
          if (shown) await flush(shown);
        }
      }
      if (!early) next = ask(insert);
    }
  } finally {
    await tokens.return(undefined);
  }
  const held = replyText.flush();
  await flush(unsent + (hideCalls && toolState ? "" : held));
  return { ids, text: replyText.final, stopReason, firstTokenAt, decodeMs: firstTokenAt ? performance.now() - firstTokenAt : 0 };
}

/** Whether `p` settles within `ms` (either way) or the time runs out first. */
async function firstOf(p: Promise<unknown>, ms: number): Promise<"settled" | "timeout"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
  try {
    return await Promise.race([p.then(() => "settled" as const, () => "settled" as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
