import React from "react";
import { Box, Text } from "ink";
import { useChat } from "../ChatContext.js";
import { useLineInput } from "../hooks/useLineInput.js";
import type { LineState } from "../input/lineEditor.js";

/** The text with an inverse block where the cursor is. */
function WithCursor({ line }: { line: LineState }) {
  const { text, cursor } = line;
  const at = text[cursor];
  const under = at === undefined || at === "\n" ? " " : at;
  return (
    <Text>
      {text.slice(0, cursor)}
      <Text inverse>{under}</Text>
      {at === "\n" ? "\n" : ""}
      {text.slice(cursor + (at === undefined ? 0 : 1))}
    </Text>
  );
}

/** The prompt: line editing, history, """ blocks, completion candidates and hints. */
export function InputLine() {
  const { state, controller } = useChat();
  const { line, block, candidates } = useLineInput(controller);
  const busy = state.live !== undefined || state.working;
  return (
    <Box flexDirection="column" marginTop={1}>
      {block && (
        <Text color="gray">
          {'"""'}
          {block.map((l) => `\n┆ ${l}`).join("")}
        </Text>
      )}
      <Box>
        <Text color={busy ? "gray" : "cyan"} bold>
          {block ? "┆ " : "› "}
        </Text>
        <WithCursor line={line} />
      </Box>
      {candidates.length > 0 && <Text color="gray">{candidates.join("  ")}</Text>}
      {block && <Text color="gray">{'end the message with """ on its own line'}</Text>}
      {state.notice && <Text color="yellow">{state.notice}</Text>}
    </Box>
  );
}
