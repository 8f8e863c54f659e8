import type { StopReason, TurnStats } from "@nanollm/shared";

export interface Entry {
  id: number;
  role: "user" | "bot" | "info" | "error";
  text: string;
}

export interface ChatState {
  entries: Entry[];
  /** The reply streaming in, shown live below the finished entries. */
  live: string | undefined;
  lastStats: TurnStats | undefined;
  lastStop: StopReason | undefined;
  nextId: number;
}

export type Action =
  | { type: "user"; text: string }
  | { type: "delta"; text: string }
  | { type: "end"; reply: string; stats: TurnStats | undefined; stop: StopReason }
  | { type: "info"; text: string }
  | { type: "error"; text: string };

export const initialState: ChatState = { entries: [], live: undefined, lastStats: undefined, lastStop: undefined, nextId: 0 };

/** The one reducer behind the chat screen. */
export function reducer(state: ChatState, action: Action): ChatState {
  const add = (role: Entry["role"], text: string): ChatState => ({ ...state, entries: [...state.entries, { id: state.nextId, role, text }], nextId: state.nextId + 1 });
  switch (action.type) {
    case "user":
      return { ...add("user", action.text), live: "" };
    case "delta":
      return { ...state, live: (state.live ?? "") + action.text };
    case "end":
      return { ...add("bot", action.reply), live: undefined, lastStats: action.stats, lastStop: action.stop };
    case "info":
      return add("info", action.text);
    case "error":
      return { ...add("error", action.text), live: undefined };
    default:
      return action satisfies never;
  }
}
