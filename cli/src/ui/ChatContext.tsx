import React, { createContext, useContext, useSyncExternalStore, type ReactNode } from "react";
import type { ChatController } from "./ChatController.js";
import type { ChatStore } from "./ChatStore.js";
import type { ChatState } from "./state.js";

interface ChatContextValue {
  store: ChatStore;
  controller: ChatController;
}

const ChatContext = createContext<ChatContextValue | undefined>(undefined);

export function ChatProvider({ store, controller, children }: ChatContextValue & { children: ReactNode }) {
  return <ChatContext.Provider value={{ store, controller }}>{children}</ChatContext.Provider>;
}

/** The chat state and the controller that changes it; only inside <ChatProvider>. */
export function useChat(): { state: ChatState; controller: ChatController } {
  const ctx = useContext(ChatContext);
  if (!ctx) throw new Error("useChat() is used outside <ChatProvider>; wrap the chat screen in it.");
  const state = useSyncExternalStore(ctx.store.subscribe, ctx.store.getState);
  return { state, controller: ctx.controller };
}
