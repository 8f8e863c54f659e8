import type { FunctionDecl } from "@nanollm/shared";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";

/** A client-side function: declare it in a session for heldTurn(). */
export const WEATHER: FunctionDecl = { name: "WEATHER", description: "Returns the weather of a city.", parametersJson: JSON.stringify({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }) };

/**
 * Starts a turn that stops mid-reply at a call of the client's WEATHER function until `answer()`:
 * a turn that holds its session's lease for as long as the test wants.
 */
export async function heldTurn(client: NanoClient, sessionId: string) {
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  let called!: () => void;
  const waiting = new Promise<void>((resolve) => (called = resolve));
  const events = (async () => {
    let reply = "";
    for await (const ev of client.turn(sessionId, "Weather?", { grammar: `root ::= ${JSON.stringify('WEATHER("Oslo") says')}`, maxNewTokens: 30 }, undefined, async () => {
      called();
      await answered;
      return { result: " sunny", isError: false };
    })) {
      if (ev.kind?.$case === "end") reply = ev.kind.end.reply;
    }
    return reply;
  })();
  // A turn that fails before the call must not leave the test waiting.
  await Promise.race([waiting, events]);
  return { answer, reply: events };
}
