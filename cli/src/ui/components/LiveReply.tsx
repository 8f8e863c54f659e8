import React from "react";
import { Box, Text } from "ink";
import { useChat } from "../ChatContext.js";
import { useTerminalSize } from "../hooks/useTerminalSize.js";
import { tailLines } from "./tailLines.js";

/** Rows kept free below the live reply for the input, hints and the status line. */
const RESERVED_ROWS = 7;

/**
 * The paragraph of the reply still streaming in, as plain text (it becomes Markdown once the
 * paragraph is complete). Only its end is drawn when it is taller than the terminal: redrawing
 * more than a screen makes terminals scroll and flicker.
 */
export function LiveReply() {
  const { state } = useChat();
  const { columns, rows } = useTerminalSize();
  const live = state.live;
  if (!live) return null;
  if (live.text === "" && live.committed === "") return <Text color="gray">…</Text>;
  // Ink wraps at word boundaries, which fills rows less than the character count suggests:
  // estimate with a narrower width so the live area never reaches the terminal's height (Ink
  // then clears the screen and reprints the whole transcript on every frame).
  const tail = tailLines(live.text, Math.max(10, Math.floor((columns - 1) * 0.8)), Math.max(3, rows - RESERVED_ROWS));
  return (
    <Box flexDirection="column" marginTop={live.committed === "" ? 1 : 0}>
      {tail.hidden && <Text color="gray">⋮</Text>}
      <Text>{tail.text}</Text>
    </Box>
  );
}
