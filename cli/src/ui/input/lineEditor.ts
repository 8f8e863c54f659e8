import type { Key } from "ink";

/** The text being typed and the cursor position in it (UTF-16 index). */
export interface LineState {
  text: string;
  cursor: number;
}

export const EMPTY_LINE: LineState = { text: "", cursor: 0 };

const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;
const prev = (s: string, i: number) => (i >= 2 && isLow(s.charCodeAt(i - 1)) ? i - 2 : Math.max(0, i - 1));
const next = (s: string, i: number) => (i < s.length && isLow(s.charCodeAt(i + 1)) ? i + 2 : Math.min(s.length, i + 1));

function wordLeft(s: string, i: number): number {
  while (i > 0 && /\s/.test(s[i - 1]!)) i--;
  while (i > 0 && !/\s/.test(s[i - 1]!)) i--;
  return i;
}

function wordRight(s: string, i: number): number {
  while (i < s.length && /\s/.test(s[i]!)) i++;
  while (i < s.length && !/\s/.test(s[i]!)) i++;
  return i;
}

export function insertText(l: LineState, text: string): LineState {
  return { text: l.text.slice(0, l.cursor) + text + l.text.slice(l.cursor), cursor: l.cursor + text.length };
}

function cut(l: LineState, from: number, to: number): LineState {
  return { text: l.text.slice(0, from) + l.text.slice(to), cursor: from };
}

/**
 * Readline-style editing: ←/→, Home/End, Ctrl+A/E/B/F, Alt+B/F (words), Backspace, Ctrl+D
 * (delete forward), Ctrl+U/K (kill to start/end), Ctrl+W (kill word). Returns undefined for a key
 * that is not an editing key, so the caller can give it another meaning.
 */
export function editLine(l: LineState, input: string, key: Key): LineState | undefined {
  const { text, cursor } = l;
  if (key.leftArrow) return { text, cursor: key.ctrl || key.meta ? wordLeft(text, cursor) : prev(text, cursor) };
  if (key.rightArrow) return { text, cursor: key.ctrl || key.meta ? wordRight(text, cursor) : next(text, cursor) };
  if (key.home) return { text, cursor: 0 };
  if (key.end) return { text, cursor: text.length };
  // Terminals send Backspace as DEL (0x7f), which Ink reports as `delete`.
  if (key.backspace || key.delete) return key.meta ? cut(l, wordLeft(text, cursor), cursor) : cut(l, prev(text, cursor), cursor);
  if (key.ctrl) {
    switch (input) {
      case "a":
        return { text, cursor: 0 };
      case "e":
        return { text, cursor: text.length };
      case "b":
        return { text, cursor: prev(text, cursor) };
      case "f":
        return { text, cursor: next(text, cursor) };
      case "d":
        return cut(l, cursor, next(text, cursor));
      case "u":
        return cut(l, 0, cursor);
      case "k":
        return cut(l, cursor, text.length);
      case "w":
        return cut(l, wordLeft(text, cursor), cursor);
      default:
        return undefined;
    }
  }
  if (key.meta && input === "b") return { text, cursor: wordLeft(text, cursor) };
  if (key.meta && input === "f") return { text, cursor: wordRight(text, cursor) };
  return undefined;
}
