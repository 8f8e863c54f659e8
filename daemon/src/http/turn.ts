import { randomUUID } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { fail, StopReason, type GenerationParams } from "@nanollm/shared";
import type { Identity } from "../auth/Identity.js";
import type { DaemonState } from "../rpc/handlers.js";
import { SESSION_ID } from "../sessions/limits.js";
import { runTurn, type TurnResult, type TurnSink } from "../sessions/runTurn.js";
import type { ImageBytes } from "../sessions/Journal.js";
import type { Conversation, StatelessSessions } from "../sessions/StatelessSessions.js";
import { replyKey } from "./conversation.js";
import { sessionInfo } from "../rpc/convert.js";
import { toServiceError } from "../rpc/errors.js";
import type { Session } from "../sessions/Session.js";

/** What the HTTP routes share: the daemon's models and sessions, and its shutdown. */
export interface HttpApi {
  state: DaemonState;
  stateless: StatelessSessions;
  shutdown: AbortSignal;
}

export interface HttpTurn {
  who: Identity;
  conv: Conversation;
  params: GenerationParams;
  stops: string[];
  /** The session the client pinned (X-Nanollm-Session), if any. */
  pinned: string | undefined;
  signal: AbortSignal;
  text: (delta: string) => Promise<void>;
}

/** Runs one request's turn in the session that best holds its conversation; tool calls come back to the client. */
export async function runHttpTurn(api: HttpApi, t: HttpTurn): Promise<TurnResult> {
  const leave = api.state.gate.enter();
  try {
    return await claimAndRun(api, t);
  } finally {
    leave();
  }
}

async function claimAndRun(api: HttpApi, t: HttpTurn): Promise<TurnResult> {
  const claim = await api.stateless.claim(t.conv, t.who, t.pinned);
  const session = claim.session;
  const observed = { who: t.who, session, text: t.conv.lead.map((m) => m.text).join("\n"), warm: session.history.length > 0, startedAt: performance.now() };
  let result: TurnResult | undefined;
  try {
    const turnId = randomUUID();
    const sink = textOnly(t.text);
    // A pinned session is a listed one: clients watching it (Attach) see this turn too.
    result = await runTurn(session, { turnId, text: "", lead: t.conv.lead, params: t.params, signal: t.signal, stops: t.stops, toolCalls: "return" }, t.pinned === undefined ? sink : shownToWatchers(session, turnId, t.who, observed.text, sink));
    api.state.turns.ended(observed, result);
    const bot = session.history.at(-1);
    const calls = result.toolCalls.map((c) => ({ name: c.name, arguments: c.argumentsJson }));
    if (bot?.role === "bot") api.stateless.remember(t.conv.host, t.who, replyKey(result.reply, calls), bot);
    return result;
  } catch (err) {
    api.state.turns.failed(observed, err);
    throw err;
  } finally {
    claim.release(result?.stats.inputTokens);
  }
}

/** `inner`, with the turn's message, text and end published in the session's feed for its watchers. */
function shownToWatchers(session: Session, turnId: string, who: Identity, message: string, inner: TurnSink): TurnSink {
  const base = { turnId, sessionId: session.id };
  const feed = session.feed;
  let announced = false;
  return {
    ...inner,
    started: async () => {
      announced = true;
      feed.publish({ ...base, kind: { $case: "user", user: { text: message, imageNames: [], sender: who.name } } });
    },
    text: (delta, tokenIds) => {
      feed.publish({ ...base, kind: { $case: "text", text: { text: delta, tokenIds } } });
      return inner.text(delta, tokenIds);
    },
    ended: async (outcome) => {
      if (!announced) return;
      if ("result" in outcome) feed.publish({ ...base, kind: { $case: "end", end: { ...outcome.result, session: sessionInfo(session, false) } } });
      else {
        // The request's own handler logs it; here it only becomes the event's code and sentence.
        const { code, details } = toServiceError(outcome.error, () => undefined);
        feed.publish({ ...base, kind: { $case: "error", error: { code: code ?? 13, message: details ?? "" } } });
      }
    },
  };
}

/** A turn sink for clients that run their own tools: only text goes out while the turn runs. */
function textOnly(text: (delta: string) => Promise<void>): TurnSink {
  return {
    text: (delta) => (delta ? text(delta) : Promise.resolve()),
    wrapped: async () => {},
    functionCall: async () => {},
    functionResult: async () => {},
    clientResult: async (_id, name) => ({ result: `${name} cannot run here`, isError: true }),
  };
}

/** Aborted when the client goes away before its response is complete, or the daemon shuts down. */
export function requestSignal(reply: FastifyReply, shutdown: AbortSignal): AbortSignal {
  const gone = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return AbortSignal.any([gone.signal, shutdown]);
}

/** Where a request's images are stored: the journal's store when the client pinned a session (its images must survive a restart), nowhere otherwise (a stateless client resends them). */
export function imageStoreFor(api: HttpApi, req: FastifyRequest): ImageBytes | undefined {
  return pinnedSession(req) === undefined ? undefined : api.state.sessions.images;
}

/** The session a client pins with `X-Nanollm-Session: ID` (journaled, listed), or undefined. */
export function pinnedSession(req: FastifyRequest): string | undefined {
  const value = req.headers["x-nanollm-session"];
  if (value === undefined) return undefined;
  const id = Array.isArray(value) ? value[0] : value;
  if (id === undefined || !SESSION_ID.test(id)) throw fail.invalid("The X-Nanollm-Session header must be 1 to 128 letters, digits, '_' or '-' (a session id, as gRPC clients name them); fix it or leave it out.");
  return id;
}

/** Why a reply ended, in the words of the OpenAI and Ollama APIs. */
export function finishReason(r: TurnResult): "stop" | "length" | "tool_calls" {
  if (r.toolCalls.length > 0) return "tool_calls";
  return r.stopReason === StopReason.STOP_REASON_MAX_TOKENS || r.stopReason === StopReason.STOP_REASON_CONTEXT_FULL ? "length" : "stop";
}
