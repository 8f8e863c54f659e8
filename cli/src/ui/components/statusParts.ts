import type { ChatState } from "../state.js";

interface Part {
  text: string;
  /** Place on the line (left to right). */
  order: number;
}

/** The status line's fields, most important first: a narrow terminal drops from the end. */
export function statusParts(s: ChatState): Part[] {
  const session = s.session;
  const parts: Part[] = [{ text: `ctx ${session.contextUsed}/${session.contextSize}`, order: 4 }];
  if (s.live) parts.push({ text: `streaming ${s.live.tokens} tokens · Esc stops`, order: 5 });
  else if (s.lastStats) parts.push({ text: `prefill ${s.lastStats.prefillTokensPerSecond.toFixed(0)} · decode ${s.lastStats.decodeTokensPerSecond.toFixed(1)} tok/s`, order: 5 });
  parts.push({ text: session.model, order: 1 });
  parts.push({ text: `session ${session.sessionId.slice(0, 8)}`, order: 3 });
  parts.push({ text: session.chatTemplate, order: 2 });
  parts.push({ text: s.host, order: 0 });
  return parts;
}

/** As many fields as fit in `width` columns, in line order. */
export function fitStatus(parts: Part[], width: number, sep = " · "): string {
  const kept: Part[] = [];
  let used = 0;
  for (const p of parts) {
    const cost = p.text.length + (kept.length ? sep.length : 0);
    if (used + cost > width) continue;
    kept.push(p);
    used += cost;
  }
  return kept
    .sort((a, b) => a.order - b.order)
    .map((p) => p.text)
    .join(sep);
}
