import assert from "node:assert/strict";
import type { CreateSessionRequest, Message } from "@nanollm/shared";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { turn } from "./daemon.js";

/** `text` as the next turn of a fresh session handed `history` at once (bot messages keep their token ids; text only). */
export async function replayTurn(client: NanoClient, history: readonly Message[], text: string, maxNewTokens: number, create: Partial<CreateSessionRequest> = { chatTemplate: "chat-ml" }) {
  const fresh = await client.createSession({ ...create, history: history.map((m) => ({ role: m.role, text: m.text, tokenIds: m.tokenIds, images: [] })) });
  return turn(client, fresh.sessionId, text, maxNewTokens);
}

/**
 * The oracle for anything that touches the cache: the session's next greedy turn equals a fresh
 * session replaying its history. Returns the history it started from and the session's turn.
 */
export async function assertNextTurnMatchesReplay(client: NanoClient, sessionId: string, text: string, maxNewTokens = 8, create?: Partial<CreateSessionRequest>) {
  const info = await client.getSession(sessionId, true);
  const next = await turn(client, sessionId, text, maxNewTokens);
  const fresh = await replayTurn(client, info.history, text, maxNewTokens, create);
  assert.deepEqual(next.ids, fresh.ids, "the cached session's reply equals a fresh session replaying its history");
  return { info, next, fresh };
}
