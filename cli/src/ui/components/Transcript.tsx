import React from "react";
import { Box, Static } from "ink";
import { useChat } from "../ChatContext.js";
import { useRepaintOnNarrow } from "../hooks/useRepaintOnNarrow.js";
import { useTerminalSize } from "../hooks/useTerminalSize.js";
import { MessageView } from "./MessageView.js";

/** Finished entries: printed once into the terminal's scrollback; again only after the terminal narrowed. */
export function Transcript() {
  const { state } = useChat();
  const { columns } = useTerminalSize();
  const generation = useRepaintOnNarrow();
  return (
    <Static key={generation} items={state.entries}>
      {(entry) => (
        <Box key={entry.id} width={columns}>
          <MessageView entry={entry} width={columns - 1} />
        </Box>
      )}
    </Static>
  );
}
