import { reducer, type Action, type ChatState } from "./state.js";

/**
 * Holds the chat state and runs the one reducer. It lives outside React so the controller can
 * read the current state between awaits; components subscribe through useChat().
 */
export class ChatStore {
  private state: ChatState;
  private readonly listeners = new Set<() => void>();

  constructor(initial: ChatState) {
    this.state = initial;
  }

  getState = (): ChatState => this.state;

  dispatch = (action: Action): void => {
    const next = reducer(this.state, action);
    if (next === this.state) return;
    this.state = next;
    for (const listener of this.listeners) listener();
  };

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };
}
