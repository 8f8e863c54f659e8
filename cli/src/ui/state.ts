import type { GenerationParams, SessionInfo, StopReason, TurnStats } from "@nanollm/shared";
import { splitLive } from "./markdown/splitLive.js";

export type EntryKind = "user" | "bot" | "function" | "info" | "error";

/** A finished transcript entry, printed once in <Static>. */
export interface Entry {
  id: number;
  kind: EntryKind;
  text: string;
  /** A later paragraph of a reply whose start is already printed (no role marker). */
  cont?: boolean;
}

/** The reply streaming in; paragraphs that are complete have already moved to the transcript. */
export interface LiveReply {
  text: string;
  /** Everything of this reply already moved to the transcript. */
  committed: string;
  /** Tokens received so far in this reply. */
  tokens: number;
}

export interface ChatState {
  host: string;
  session: SessionInfo;
  /** Per-turn overrides set with /set; unset fields use the session's defaults. */
  params: GenerationParams;
  entries: Entry[];
  live: LiveReply | undefined;
  /** A slash command is running (the input waits for it). */
  working: boolean;
  lastStats: TurnStats | undefined;
  lastStop: StopReason | undefined;
  /** A one-line hint under the input (e.g. "press Ctrl+C again to quit"). */
  notice: string | undefined;
  nextId: number;
}

export type Action =
  | { type: "user"; text: string }
  | { type: "turnStart" }
  | { type: "delta"; text: string; tokens: number }
  /** A function call or its result: shown apart from the reply text around it. */
  | { type: "function"; text: string }
  | { type: "end"; reply: string; stats: TurnStats | undefined; stop: StopReason }
  | { type: "turnFailed"; text: string }
  | { type: "info"; text: string }
  | { type: "error"; text: string }
  | { type: "entry"; kind: EntryKind; text: string }
  | { type: "session"; session: SessionInfo }
  | { type: "params"; params: GenerationParams }
  | { type: "working"; working: boolean }
  | { type: "notice"; text: string | undefined };

export function initialState(host: string, session: SessionInfo, params: GenerationParams): ChatState {
  return { host, session: { ...session, history: [] }, params, entries: [], live: undefined, working: false, lastStats: undefined, lastStop: undefined, notice: undefined, nextId: 0 };
}

function add(state: ChatState, kind: EntryKind, text: string, cont = false): ChatState {
  const entry: Entry = cont ? { id: state.nextId, kind, text, cont } : { id: state.nextId, kind, text };
  return { ...state, entries: [...state.entries, entry], nextId: state.nextId + 1 };
}

/** Moves what is left of the live reply to the transcript. */
function commitLive(state: ChatState, reply?: string): ChatState {
  const live = state.live;
  if (!live) return state;
  const rest = reply !== undefined && reply.startsWith(live.committed) ? reply.slice(live.committed.length) : live.text;
  const done = { ...state, live: undefined };
  if (rest.trim() === "") return live.committed === "" && reply !== undefined ? add(done, "info", "(empty reply)") : done;
  return add(done, "bot", rest, live.committed !== "");
}

/** The one reducer behind the chat screen. */
export function reducer(state: ChatState, action: Action): ChatState {
  switch (action.type) {
    case "user":
      return add({ ...state, notice: undefined }, "user", action.text);
    case "turnStart":
      return { ...state, live: { text: "", committed: "", tokens: 0 } };
    case "delta": {
      const live = state.live ?? { text: "", committed: "", tokens: 0 };
      const { done, rest } = splitLive(live.text + action.text);
      const next = { ...state, live: { text: rest, committed: live.committed + done, tokens: live.tokens + action.tokens } };
      return done === "" ? next : add(next, "bot", done, live.committed !== "");
    }
    case "function": {
      // Print the text before the call first, so the screen shows the events in their order.
      const live = state.live;
      if (!live) return add(state, "function", action.text);
      const flushed = { ...commitLive(state), live: { text: "", committed: live.committed + live.text, tokens: live.tokens } };
      return add(flushed, "function", action.text);
    }
    case "end":
      return { ...commitLive(state, action.reply), lastStats: action.stats, lastStop: action.stop };
    case "turnFailed":
      return add(commitLive(state), "error", action.text);
    case "info":
      return add(state, "info", action.text);
    case "error":
      return add(state, "error", action.text);
    case "entry":
      return add(state, action.kind, action.text);
    case "session": {
      const session = { ...action.session, history: [] };
      // Another session's last turn says nothing about this one.
      return session.sessionId === state.session.sessionId ? { ...state, session } : { ...state, session, lastStats: undefined, lastStop: undefined };
    }
    case "params":
      return { ...state, params: action.params };
    case "working":
      return { ...state, working: action.working };
    case "notice":
      return { ...state, notice: action.text };
    default:
      return action satisfies never;
  }
}
