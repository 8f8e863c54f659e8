import React, { useReducer, useRef, useState } from "react";
import { Box, Static, Text, useApp, useInput } from "ink";
import TextInput from "ink-text-input";
import type { GenerationParams, SessionInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { statsLine } from "../commands/format.js";
import { initialState, reducer, type Entry } from "./state.js";

interface Props {
  client: NanoClient;
  session: SessionInfo;
  params: GenerationParams;
}

const COLORS: Record<Entry["role"], string> = { user: "cyan", bot: "white", info: "gray", error: "red" };

/** The chat screen: finished messages in <Static>, the live reply and the input line below. */
export function ChatApp({ client, session, params }: Props) {
  const { exit } = useApp();
  const [state, dispatch] = useReducer(reducer, initialState);
  const [input, setInput] = useState("");
  const abort = useRef<AbortController | undefined>(undefined);
  const lastCtrlC = useRef(0);

  useInput((ch, key) => {
    if (key.escape || (key.ctrl && ch === "c")) {
      if (abort.current) {
        abort.current.abort();
        return;
      }
      if (key.ctrl && ch === "c") {
        const now = Date.now();
        if (now - lastCtrlC.current < 2000) exit();
        else dispatch({ type: "info", text: "press Ctrl+C again to quit" });
        lastCtrlC.current = now;
      }
    }
  });

  const send = async (text: string) => {
    setInput("");
    if (!text.trim() || abort.current) return;
    if (text.trim() === "/quit") return exit();
    dispatch({ type: "user", text });
    abort.current = new AbortController();
    try {
      for await (const ev of client.turn(session.sessionId, text, params, abort.current.signal)) {
        const kind = ev.kind;
        if (kind?.$case === "text") dispatch({ type: "delta", text: kind.text.text });
        else if (kind?.$case === "end") dispatch({ type: "end", reply: kind.end.reply, stats: kind.end.stats, stop: kind.end.stopReason });
      }
    } catch (err) {
      dispatch({ type: "error", text: err instanceof Error ? err.message : String(err) });
    } finally {
      abort.current = undefined;
    }
  };

  // Typed-ahead or pasted text can arrive with its Enter in one chunk: the line break submits.
  const onChange = (value: string) => {
    const end = value.search(/[\r\n]/);
    if (end >= 0) void send(value.slice(0, end));
    else setInput(value);
  };

  return (
    <Box flexDirection="column">
      <Static items={state.entries}>
        {(e) => (
          <Text key={e.id} color={COLORS[e.role]}>
            {e.role === "user" ? "› " : ""}
            {e.text}
          </Text>
        )}
      </Static>
      {state.live !== undefined && <Text>{state.live}</Text>}
      <Box>
        <Text color="cyan">› </Text>
        <TextInput value={input} onChange={onChange} onSubmit={(t) => void send(t)} />
      </Box>
      <Text color="gray">
        {client.host} · {session.model} · {session.chatTemplate}
        {state.lastStats && state.lastStop !== undefined ? ` · ${statsLine(state.lastStats, state.lastStop)}` : ""}
      </Text>
    </Box>
  );
}
