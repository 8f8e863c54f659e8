import React from "react";
import { Box } from "ink";
import { InputLine } from "./components/InputLine.js";
import { LiveReply } from "./components/LiveReply.js";
import { StatusLine } from "./components/StatusLine.js";
import { Transcript } from "./components/Transcript.js";

/** The chat screen's layout: finished messages, the live reply, the input, the status line. */
export function ChatApp() {
  return (
    <Box flexDirection="column">
      <Transcript />
      <LiveReply />
      <InputLine />
      <StatusLine />
    </Box>
  );
}
