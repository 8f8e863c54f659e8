import { once } from "node:events";
import http2 from "node:http2";
import { randomUUID } from "node:crypto";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { fail, type ChatEvent, type ChatRequest, type ChatServiceServer, type UserTurn } from "@nanollm/shared";
import { runTurn } from "../sessions/runTurn.js";
import type { CallOutcome } from "../sessions/TurnCalls.js";
import { sessionInfo } from "./convert.js";
import { toServiceError } from "./errors.js";
import { checkDecoded } from "./malformed.js";
import type { DaemonState } from "./handlers.js";
import { identityOf } from "../auth/guard.js";
import type { SessionFeed } from "../sessions/SessionFeed.js";

type Stream = ServerDuplexStream<ChatRequest, ChatEvent>;

/**
 * A resumable turn whose stream dropped goes on while someone watches its session (its client,
 * once it reattached), and is cancelled after `graceMs` with nobody watching.
 */
function orphaned(turn: StreamTurn, graceMs: number, turnId: string, orphans: Map<string, StreamTurn>): void {
  orphans.set(turnId, turn);
  const check = () => {
    if (turn.cancel.signal.aborted) return;
    if ((turn.feed?.watching ?? 0) > 0) setTimeout(check, graceMs).unref();
    else turn.cancel.abort();
  };
  setTimeout(check, graceMs).unref();
}

/** A turn running on this stream: how to cancel it, who sent it, and the feed of its session once known. */
interface StreamTurn {
  cancel: AbortController;
  resumable: boolean;
  owner: string;
  feed?: SessionFeed;
}

/**
 * The Chat stream: each user turn runs as it arrives, its events written as they come (waiting
 * for `drain` when the client is slow). A failing turn ends with an error event and the stream
 * goes on; only a request that cannot be read at all ends the stream with its status. Each turn
 * has one AbortSignal: its CancelTurn, the client's disconnect or deadline, or the daemon's shutdown.
 */
export function chatHandler(state: DaemonState, shutdown: AbortSignal): ChatServiceServer["chat"] {
  // Resumable turns whose stream dropped, by turn id: their client may cancel them from a new stream.
  const orphans = new Map<string, StreamTurn>();
  // Client function calls waiting for an answer, by call id (unguessable), with the caller that may give it.
  const clientCalls = new Map<string, { owner: string; done: (outcome: CallOutcome) => void }>();
  return (call: Stream) => {
    const who = identityOf(call);
    const closed = new AbortController();
    // Disconnect and deadline ("cancelled"), the stream's end or failure, and shutdown.
    const streamSignal = AbortSignal.any([closed.signal, shutdown]);
    // Broken: the stream cannot go on (a stalled reader, an unreadable request); every turn stops.
    const broken = new AbortController();
    const turns = new Map<string, StreamTurn>();
    // A client function call's answer comes on any stream of its caller (one that reattached uses a new one).
    const waitingCall = (callId: string) => {
      const call = clientCalls.get(callId);
      return call && (call.owner === who.name || who.admin) ? call.done : undefined;
    };
    let inputEnded = false;
    let failed = false;
    const close = () => {
      if (closed.signal.aborted) return;
      closed.abort();
      for (const [id, t] of turns) if (t.resumable) orphaned(t, state.resumeGraceMs, id, orphans);
    };
    call.on("cancelled", close);
    call.on("close", close);
    call.on("error", close);

    // A client that stops reading fills its HTTP/2 window; past the write timeout its turns are
    // cancelled (releasing their KV sequences) and the stream is closed.
    const write = async (event: ChatEvent) => {
      if (streamSignal.aborted || failed) return;
      if (call.write(event)) return;
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<"stalled">((resolve) => (timer = setTimeout(() => resolve("stalled"), state.writeTimeoutMs)));
      const outcome = await Promise.race([once(call, "drain"), once(streamSignal, "abort"), stalled]).finally(() => clearTimeout(timer));
      if (outcome !== "stalled") return;
      state.log(`a Chat stream left its events unread for ${state.writeTimeoutMs / 1000} s; its turns are cancelled`);
      finish(fail.unavailable(`The client read none of the turn's events for ${state.writeTimeoutMs / 1000} s (NANOLLM_WRITE_TIMEOUT_MS); the turn was cancelled.`));
      // Trailers would wait behind the unread data: reset the stream instead.
      (call as unknown as { call?: { stream?: { close(code?: number): void } } }).call?.stream?.close(http2.constants.NGHTTP2_CANCEL);
    };
    /** Ends the stream: with a status when it cannot go on, or once the client is done and no turn runs. */
    const finish = (err?: unknown) => {
      if (failed || call.writableEnded) return;
      if (err !== undefined) {
        failed = true;
        broken.abort();
        close();
        // grpc-js turns an 'error' on a server stream into the call's status.
        call.emit("error", toServiceError(err, state.log));
      } else if (inputEnded && turns.size === 0) {
        call.end();
      }
    };

    const startTurn = (turn: UserTurn) => {
      const turnId = turn.turnId || randomUUID();
      const base = { turnId, sessionId: turn.sessionId };
      const errorEvent = (err: unknown): ChatEvent => {
        const { code, details } = toServiceError(err, state.log);
        return { ...base, kind: { $case: "error", error: { code: code ?? 13, message: details ?? "" } } };
      };
      if (turns.has(turnId)) {
        void write(errorEvent(fail.invalid(`Turn id ${turnId} is already running on this stream; use a new id.`)));
        return;
      }
      let leave: () => void;
      try {
        leave = state.gate.enter();
      } catch (err) {
        void write(errorEvent(err));
        return;
      }
      const cancel = new AbortController();
      // A resumable turn outlives this stream for a while (the client reattaches with Attach).
      const signal = AbortSignal.any(turn.resumable ? [cancel.signal, shutdown, broken.signal] : [cancel.signal, streamSignal]);
      const entry: StreamTurn = { cancel, resumable: turn.resumable === true, owner: who.name };
      turns.set(turnId, entry);
      // Set once the turn's last event went to the session's feed (and so to this stream too).
      let reported = false;
      // Set once watchers were told of the turn (its message was valid and its turn came).
      let announced = false;
      const run = async () => {
        const session = await state.sessions.find(turn.sessionId, who);
        base.sessionId = session.id;
        entry.feed = session.feed;
        // Every event of the turn is numbered in the session's feed, which its watchers read.
        const emit = (event: ChatEvent) => write(session.feed.publish(event));
        const observed = { who, session, text: turn.text, warm: session.history.length > 0, startedAt: performance.now() };
        const user = { text: turn.text, imageNames: (turn.images ?? []).map((i) => i.name), sender: who.name };
        await runTurn(session, { turnId, text: turn.text, params: turn.params, images: turn.images ?? [], signal, wait: !turn.noWait }, {
          // The sender knows its message: only the watchers are told.
          started: async () => {
            announced = true;
            session.feed.publish({ ...base, kind: { $case: "user", user } });
          },
          text: (text, tokenIds) => emit({ ...base, kind: { $case: "text", text: { text, tokenIds } } }),
          wrapped: (info) => emit({ ...base, kind: { $case: "wrapped", wrapped: info } }),
          loading: (model, progress) => emit({ ...base, kind: { $case: "loading", loading: { model, progress } } }),
          functionCall: (fc) => emit({ ...base, kind: { $case: "functionCall", functionCall: fc } }),
          functionResult: (r) => emit({ ...base, kind: { $case: "functionResult", functionResult: { callId: r.callId, result: r.result, isError: r.isError } } }),
          clientResult: (callId, name) => clientResult(callId, name, signal),
          ended: (outcome) => {
            reported = true;
            if ("error" in outcome) {
              state.turns.failed(observed, outcome.error);
              // A turn refused before it was announced (an empty message) is the sender's business only.
              return announced ? emit(errorEvent(outcome.error)) : write(errorEvent(outcome.error));
            }
            state.turns.ended(observed, outcome.result);
            return emit({ ...base, kind: { $case: "end", end: { ...outcome.result, session: sessionInfo(session, false) } } });
          },
        });
      };
      run()
        .catch((err: unknown) => (reported ? undefined : write(errorEvent(err))))
        .finally(() => {
          leave();
          turns.delete(turnId);
          if (orphans.get(turnId) === entry) orphans.delete(turnId);
          finish();
        });
    };

    /** The calling client's answer to its function, or an error outcome on timeout or cancel. */
    const clientResult = (callId: string, name: string, signal: AbortSignal) =>
      new Promise<CallOutcome>((resolve) => {
        const done = (outcome: CallOutcome) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          clientCalls.delete(callId);
          resolve(outcome);
        };
        const onAbort = () => done({ result: `the turn was cancelled before ${name} returned`, isError: true });
        const timer = setTimeout(() => done({ result: `the client did not answer ${name} within ${state.functionTimeoutMs / 1000} s`, isError: true }), state.functionTimeoutMs);
        signal.addEventListener("abort", onAbort, { once: true });
        clientCalls.set(callId, { owner: who.name, done });
      });

    call.on("data", (req: ChatRequest) => {
      try {
        checkDecoded(req, "Chat");
        const kind = req.kind;
        if (!kind) throw fail.invalid("A chat request must hold a user turn or a cancel.");
        switch (kind.$case) {
          case "userTurn":
            startTurn(kind.userTurn);
            break;
          case "cancel": {
            // This stream's turn, or a resumable one of the same caller whose stream dropped.
            const orphan = orphans.get(kind.cancel.turnId);
            const target = turns.get(kind.cancel.turnId) ?? (orphan && (orphan.owner === who.name || who.admin) ? orphan : undefined);
            target?.cancel.abort();
            break;
          }
          case "functionResult": {
            const r = kind.functionResult;
            // A late answer (after the timeout) or a stray one changes nothing.
            waitingCall(r.callId)?.({ result: r.result.slice(0, 100_000), isError: r.isError });
            break;
          }
          default:
            kind satisfies never;
        }
      } catch (err) {
        finish(err);
      }
    });
    call.on("end", () => {
      inputEnded = true;
      finish();
    });
  };
}
