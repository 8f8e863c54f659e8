import { ChatEvent, NanoError, type SessionInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { statsLine } from "./format.js";

/** Times a lost watch is tried again before it gives up (after 0.25, 0.5, 1, 2, 4 s). */
const RETRIES = 5;

/**
 * `chat --session ID --watch`: the session's events as they come, until Ctrl+C. A reply in
 * progress shows from its start; every later turn follows, whoever sends it (its message as
 * "> text", then the reply). A lost connection is tried again from the last event seen.
 */
export async function watchSession(client: NanoClient, session: SessionInfo, json: boolean): Promise<void> {
  process.stderr.write(`watching session ${session.sessionId} · model ${session.model} · Ctrl+C stops\n`);
  const stop = new AbortController();
  const onSigint = () => stop.abort();
  process.once("SIGINT", onSigint);
  let after: number | undefined = session.historySeq;
  try {
    for (let failures = 0; !stop.signal.aborted; ) {
      try {
        for await (const event of client.attach(session.sessionId, after, stop.signal)) {
          failures = 0;
          after = event.seq ?? after;
          print(event, json);
        }
      } catch (err) {
        if (!(err instanceof NanoError && err.code === "UNAVAILABLE") || ++failures > RETRIES) throw err;
        await new Promise((r) => setTimeout(r, 125 * 2 ** failures));
      }
    }
  } finally {
    process.off("SIGINT", onSigint);
  }
}

function print(event: ChatEvent, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(ChatEvent.toJSON(event)) + "\n");
    return;
  }
  const kind = event.kind;
  switch (kind?.$case) {
    case "user":
      process.stdout.write(`> ${kind.user.text.replace(/\n/g, "\n> ")}\n`);
      break;
    case "text":
      process.stdout.write(kind.text.text);
      break;
    case "end":
      process.stdout.write("\n");
      process.stderr.write(`[${statsLine(kind.end.stats, kind.end.stopReason)}]\n`);
      break;
    case "error":
      process.stdout.write("\n");
      process.stderr.write(`[turn failed: ${kind.error.message}]\n`);
      break;
    case "functionCall":
      process.stderr.write(`[call ${kind.functionCall.name}(${kind.functionCall.argumentsJson})]\n`);
      break;
    case "loading":
      if (kind.loading.progress === 0) process.stderr.write(`[loading ${kind.loading.model} again]\n`);
      break;
    case "functionResult":
    case "wrapped":
    case undefined:
      break;
    default:
      kind satisfies never;
  }
}
