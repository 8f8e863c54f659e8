/**
 * The end of `text` that fits in `rows` terminal rows of `columns` columns (counting wrapped
 * lines by characters, which errs on the short side for wide characters). `hidden` tells whether
 * anything was left out.
 */
export function tailLines(text: string, columns: number, rows: number): { text: string; hidden: boolean } {
  const width = Math.max(1, columns);
  const lines = text.split("\n");
  const kept: string[] = [];
  let used = 0;
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    const need = Math.max(1, Math.ceil(line.length / width));
    if (used + need > rows) {
      const room = rows - used;
      // Keep the end of a line too long for what is left, cut at a row boundary.
      if (room > 0) kept.unshift(line.slice((need - room) * width));
      return { text: kept.join("\n"), hidden: true };
    }
    kept.unshift(line);
    used += need;
  }
  return { text, hidden: false };
}
