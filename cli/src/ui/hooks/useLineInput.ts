import { useRef, useState } from "react";
import { useInput, type Key } from "ink";
import type { ChatController } from "../ChatController.js";
import { completeLine } from "../commands/registry.js";
import { splitControlKeys } from "../input/controlKeys.js";
import { EMPTY_LINE, editLine, insertText, type LineState } from "../input/lineEditor.js";

const FENCE = '"""';
// Bracketed paste: the terminal wraps pasted text in these (Ink strips the leading ESC).
const PASTE_START = "[200~";
const PASTE_END = "[201~";

export interface LineInputView {
  line: LineState;
  /** Lines of a """ block typed so far, or undefined outside a block. */
  block: readonly string[] | undefined;
  /** Completions offered by the last Tab. */
  candidates: readonly string[];
}

/**
 * The input line's keys. The editing state lives in refs: one stdin chunk can hold several
 * events (a paste and its markers, typed-ahead text and Enter) handled before React re-renders.
 */
export function useLineInput(controller: ChatController): LineInputView {
  const line = useRef<LineState>(EMPTY_LINE);
  const block = useRef<string[] | undefined>(undefined);
  const candidates = useRef<readonly string[]>([]);
  const pasting = useRef(false);
  const [, setVersion] = useState(0);
  const changed = () => setVersion((v) => v + 1);

  const setLine = (l: LineState) => {
    line.current = l;
    changed();
  };

  /** Sends a finished message, or keeps it in the input when a reply is still running. */
  const send = (message: string) => {
    if (controller.busy && message.trim() !== "") {
      setLine({ text: message, cursor: message.length });
      controller.notice("a reply is still running: Esc stops it, then Enter sends this");
      return;
    }
    void controller.submit(message);
  };

  const submitLine = () => {
    const text = line.current.text;
    setLine(EMPTY_LINE);
    if (block.current) {
      if (!text.trimEnd().endsWith(FENCE)) {
        block.current = [...block.current, text];
        return;
      }
      const message = [...block.current, text.trimEnd().slice(0, -FENCE.length)].join("\n");
      block.current = undefined;
      return send(message);
    }
    const start = text.trimStart();
    if (start.startsWith(FENCE)) {
      const rest = start.slice(FENCE.length);
      if (rest.trimEnd().endsWith(FENCE)) return send(rest.trimEnd().slice(0, -FENCE.length));
      block.current = rest === "" ? [] : [rest];
      return changed();
    }
    send(text);
  };

  const typeText = (text: string) => {
    // Unbracketed, a line break in typed-ahead text is Enter.
    const parts = text.split(/\r\n|\r|\n/);
    parts.forEach((part, i) => {
      if (i > 0) submitLine();
      if (part !== "") setLine(insertText(line.current, part));
    });
  };

  const onKey = (input: string, key: Key) => {
    if (pasting.current) {
      if (input === PASTE_END) pasting.current = false;
      else setLine(insertText(line.current, input.replace(/\r\n?/g, "\n")));
      return;
    }
    if (input === PASTE_START) {
      pasting.current = true;
      return;
    }
    candidates.current = [];
    if (key.ctrl && input === "c") {
      if (!controller.busy) {
        block.current = undefined;
        setLine(EMPTY_LINE);
      }
      return controller.ctrlC();
    }
    if (key.escape) {
      controller.cancel();
      return changed();
    }
    if (key.ctrl && input === "d" && line.current.text === "" && !block.current) return controller.quit();
    if (key.return) return key.meta ? setLine(insertText(line.current, "\n")) : submitLine();
    if (key.tab) {
      const done = completeLine(controller, line.current.text);
      if (!done) return;
      candidates.current = done.candidates;
      return setLine({ text: done.line, cursor: done.line.length });
    }
    if (key.upArrow || key.downArrow) {
      const text = key.upArrow ? controller.history.older(line.current.text) : controller.history.newer();
      if (text !== undefined) setLine({ text, cursor: text.length });
      return;
    }
    const edited = editLine(line.current, input, key);
    if (edited) return setLine(edited);
    if (key.ctrl || input === "") return changed();
    const keys = splitControlKeys(input);
    if (keys) keys.forEach(([i, k]) => onKey(i, k));
    else typeText(input);
  };

  useInput(onKey);
  return { line: line.current, block: block.current, candidates: candidates.current };
}
