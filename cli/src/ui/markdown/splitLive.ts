const FENCE = /^ {0,3}(```|~~~)/;

/**
 * Splits a streaming reply at its last paragraph break outside a code fence: `done` is complete
 * Markdown that can be printed for good, `rest` stays live. Printing finished paragraphs keeps the
 * live area short, so a long reply never grows taller than the terminal.
 */
export function splitLive(text: string): { done: string; rest: string } {
  let cut = -1;
  let inFence = false;
  let lineStart = 0;
  let prevBlank = false;
  while (lineStart <= text.length) {
    const nl = text.indexOf("\n", lineStart);
    if (nl < 0) break; // the last line is still being written
    const line = text.slice(lineStart, nl);
    if (FENCE.test(line)) inFence = !inFence;
    const blank = line.trim() === "";
    // A blank line after a non-blank one, outside a fence, ends a paragraph.
    if (blank && !prevBlank && !inFence && lineStart > 0) cut = nl + 1;
    prevBlank = blank;
    lineStart = nl + 1;
  }
  if (cut <= 0) return { done: "", rest: text };
  return { done: text.slice(0, cut), rest: text.slice(cut) };
}
