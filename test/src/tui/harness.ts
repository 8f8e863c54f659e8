import { render } from "ink-testing-library";
import type { GenerationParams } from "@nanollm/shared";
import { createChat } from "nanollm/dist/ui/createChat.js";
import { FakeClient } from "./fakeClient.js";
import { waitFor } from "../helpers/poll.js";

/** Keys as a terminal sends them. */
export const KEY = { enter: "\r", esc: "\x1b", ctrlC: "\x03", up: "\x1b[A", down: "\x1b[B", left: "\x1b[D", tab: "\t", backspace: "\x7f", ctrlA: "\x01", ctrlU: "\x15", ctrlW: "\x17" };

export { waitFor } from "../helpers/poll.js";

export interface ChatHarness extends ReturnType<typeof createChat> {
  client: FakeClient;
  frame(): string;
  quitRequested(): boolean;
  /** Types text (one chunk, like a fast typist or tmux send-keys). */
  type(text: string): Promise<void>;
  /** Waits until the screen shows `text`. */
  see(text: string | RegExp): Promise<void>;
  idle(): Promise<void>;
  unmount(): void;
}

/** The chat screen on a fake daemon, rendered with ink-testing-library. */
export function renderChat(opts: { client?: FakeClient; params?: GenerationParams; historyFile?: string; fresh?: boolean } = {}): ChatHarness {
  const client = opts.client ?? new FakeClient();
  let quit = false;
  // The session as `chat` hands it over: with its history when it is continued.
  const session = opts.fresh ? client.session : { ...client.session, history: [...client.history], messageCount: client.history.length };
  const chat = createChat({ client, session, params: opts.params ?? {}, historyFile: opts.historyFile, fresh: opts.fresh, onQuit: () => (quit = true) });
  const ui = render(chat.element);
  const frame = () => ui.lastFrame() ?? "";
  return {
    ...chat,
    client,
    frame,
    unmount: ui.unmount,
    quitRequested: () => quit,
    type: async (text: string) => {
      ui.stdin.write(text);
      await new Promise((r) => setTimeout(r, 20));
    },
    see: (text: string | RegExp) => waitFor(() => (typeof text === "string" ? frame().includes(text) : text.test(frame())), `the screen to show ${String(text)}:\n${frame()}`),
    idle: () => waitFor(() => !chat.controller.busy, "the chat to be idle"),
  };
}
