import React from "react";
import type { CreateSessionRequest, GenerationParams, SessionInfo } from "@nanollm/shared";
import { ChatApp } from "./ChatApp.js";
import type { ChatClient } from "./ChatClient.js";
import { ChatProvider } from "./ChatContext.js";
import { ChatController } from "./ChatController.js";
import { ChatStore } from "./ChatStore.js";
import { COMMANDS } from "./commands/index.js";
import { InputHistory } from "./input/InputHistory.js";
import { initialState } from "./state.js";

export interface ChatOptions {
  client: ChatClient;
  session: SessionInfo;
  params: GenerationParams;
  /** Where ↑/↓ history is kept; undefined keeps it in memory only. */
  historyFile: string | undefined;
  sessionRequest?: Partial<CreateSessionRequest>;
  /** The session was made for this chat (deleted at the end if left empty); otherwise its conversation is shown. */
  fresh?: boolean;
  onQuit: () => void;
}

/** The chat's store, controller and element, wired together (runTui, tests and the benchmark use it). */
export function createChat(opts: ChatOptions) {
  const store = new ChatStore(initialState(opts.client.host, opts.session, opts.params));
  const controller = new ChatController({
    client: opts.client,
    store,
    commands: COMMANDS,
    history: new InputHistory(opts.historyFile),
    sessionRequest: opts.sessionRequest,
    onQuit: opts.onQuit,
  });
  // The state keeps no history (the transcript is the screen's); the conversation is shown from here.
  void controller.start(opts.session, opts.fresh ?? false);
  const element = (
    <ChatProvider store={store} controller={controller}>
      <ChatApp />
    </ChatProvider>
  );
  return { store, controller, element };
}
