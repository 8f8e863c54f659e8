import React from "react";
import { Box, Text } from "ink";
import { useChat } from "../ChatContext.js";
import { useTerminalSize } from "../hooks/useTerminalSize.js";
import { statusLines } from "./statusParts.js";

/** host · model · template · session · context used/total · last turn's prefill and decode speed. */
export function StatusLine() {
  const { state } = useChat();
  const { columns } = useTerminalSize();
  return (
    <Box flexDirection="column">
      {statusLines(state, columns - 1).map((line, i) => (
        <Text key={i} color="gray" wrap="truncate-end">
          {line}
        </Text>
      ))}
    </Box>
  );
}
