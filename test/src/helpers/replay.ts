import assert from "node:assert/strict";
import type { CreateSessionRequest, Message } from "@nanollm/shared";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import type { RunningDaemon } from "@nanollm/daemon";
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

/**
 * `text` as the next turn of a fresh session given the session's rendered history as it is (bot
 * ids, images and all; CreateSession takes no images, so the in-process daemon's store makes it).
 * The oracle for image turns: returns that turn's reply ids.
 */
export async function replayImagesTurn(d: { client: NanoClient; daemon: RunningDaemon }, sessionId: string, text: string, maxNewTokens: number) {
  const store = d.daemon.state.sessions;
  const s = store.get(sessionId, { name: "", admin: true });
  const fresh = await store.create({
    host: s.host,
    template: "",
    templateJson: JSON.stringify(s.template),
    systemPrompt: s.systemPrompt,
    defaults: s.defaults,
    history: s.history.slice(s.windowStart).map((m) => ({ ...m, tokens: [...m.tokens] })),
    functions: s.functions,
    owner: s.owner,
  });
  try {
    return await turn(d.client, fresh.id, text, maxNewTokens);
  } finally {
    await store.delete(fresh.id, { name: "", admin: true });
  }
}
