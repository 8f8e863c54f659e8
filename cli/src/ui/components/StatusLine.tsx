import React from "react";
import { Text } from "ink";
import { useChat } from "../ChatContext.js";
import { useTerminalSize } from "../hooks/useTerminalSize.js";
import { fitStatus, statusParts } from "./statusParts.js";

/** host · model · template · session · context used/total · last turn's prefill and decode speed. */
export function StatusLine() {
  const { state } = useChat();
  const { columns } = useTerminalSize();
  return (
    <Text color="gray" wrap="truncate-end">
      {fitStatus(statusParts(state), columns - 1)}
    </Text>
  );
}
