import type { ServerWritableStream } from "@grpc/grpc-js";
import type { AttachRequest, ChatEvent, ChatServiceServer } from "@nanollm/shared";
import { identityOf } from "../auth/guard.js";
import { toServiceError } from "./errors.js";
import { checkDecoded } from "./malformed.js";
import type { DaemonState } from "./handlers.js";

type Stream = ServerWritableStream<AttachRequest, ChatEvent>;

/**
 * The Attach stream: a session's events as its feed numbers them, from now on or after the seq a
 * reattaching client saw. Each watcher reads the feed at its own pace, waiting for `drain` when
 * its client is slow; one that falls too far behind is dropped with RESOURCE_EXHAUSTED (its last
 * seq in the sentence). Only the owner or an admin finds the session, as in every session call.
 */
export function attachHandler(state: DaemonState, shutdown: AbortSignal): ChatServiceServer["attach"] {
  return (call: Stream) => {
    const gone = new AbortController();
    const leave = () => gone.abort();
    call.on("cancelled", leave);
    call.on("close", leave);
    call.on("error", leave);
    const watch = async () => {
      checkDecoded(call.request, "Attach");
      const session = await state.sessions.find(call.request.sessionId, identityOf(call));
      const feed = session.feed;
      const watcher = feed.watch(call.request.afterSeq, call.request.turnId);
      const signal = AbortSignal.any([gone.signal, shutdown, watcher.stopped]);
      try {
        while (!signal.aborted) {
          const batch = feed.read(watcher);
          if (batch.length === 0) {
            await watcher.wait(signal);
            continue;
          }
          for (const event of batch) {
            if (signal.aborted) break;
            if (!call.write(event)) await drained(call, signal);
          }
        }
      } finally {
        feed.leave(watcher);
      }
      if (watcher.dropped) throw watcher.dropped;
    };
    watch().then(
      () => !call.writableEnded && call.end(),
      (err: unknown) => !gone.signal.aborted && call.emit("error", toServiceError(err, state.log)),
    );
  };
}

/** Resolves when the stream can take more, or `signal` aborts. */
function drained(call: Stream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}
