import React from "react";
import { Box, Static } from "ink";
import { useChat } from "../ChatContext.js";
import { useTerminalSize } from "../hooks/useTerminalSize.js";
import { MessageView } from "./MessageView.js";

/** Finished entries: printed once into the terminal's scrollback, never re-rendered. */
export function Transcript() {
  const { state } = useChat();
  const { columns } = useTerminalSize();
  return (
    <Static items={state.entries}>
      {(entry) => (
        <Box key={entry.id} width={columns}>
          <MessageView entry={entry} width={columns - 1} />
        </Box>
      )}
    </Static>
  );
}
