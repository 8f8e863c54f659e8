import React from "react";
import { Box, Text } from "ink";
import { renderMarkdown } from "../markdown/renderMarkdown.js";
import type { Entry } from "../state.js";

/** One finished transcript entry; bot replies are rendered as Markdown. */
export function MessageView({ entry, width }: { entry: Entry; width: number }) {
  switch (entry.kind) {
    case "user":
      return (
        <Box marginTop={1}>
          <Text color="cyan" bold>
            {"› "}
          </Text>
          <Text color="cyan">{entry.text}</Text>
        </Box>
      );
    case "bot":
      return (
        <Box marginTop={1}>
          <Text>{renderMarkdown(entry.text, width)}</Text>
        </Box>
      );
    case "function":
      return (
        <Box borderStyle="round" borderColor="magenta" paddingX={1}>
          <Text color="magenta">
            <Text bold>function </Text>
            {entry.text}
          </Text>
        </Box>
      );
    case "info":
      return <Text color="gray">{entry.text}</Text>;
    case "error":
      return <Text color="red">{entry.text}</Text>;
    default:
      return entry.kind satisfies never;
  }
}
