import type { ChatState } from "../state.js";

interface Part {
  text: string;
  /** Place on the line (left to right). */
  order: number;
}

/** Which daemon, model, template and session: most important first. */
function identity(s: ChatState): Part[] {
  const session = s.session;
  return [
    { text: session.model, order: 1 },
    { text: `session ${session.sessionId.slice(0, 8)}`, order: 3 },
    { text: session.chatTemplate, order: 2 },
    { text: s.host, order: 0 },
  ];
}

/** Context use and speed: most important first. */
function numbers(s: ChatState): Part[] {
  // While a reply streams, its tokens fill the context too (the daemon's count follows at its end).
  const used = s.session.contextUsed + (s.live?.tokens ?? 0);
  const parts: Part[] = [{ text: `ctx ${used}/${s.session.contextSize}`, order: 4 }];
  if (s.live) parts.push({ text: `streaming ${s.live.tokens} tokens · Esc stops`, order: 5 });
  else if (s.lastStats) parts.push({ text: `prefill ${s.lastStats.prefillTokensPerSecond.toFixed(0)} tok/s · decode ${s.lastStats.decodeTokensPerSecond.toFixed(1)} tok/s`, order: 5 });
  return parts;
}

const SEP = " · ";

/** As many parts as fit in `width` columns, in line order; the least important go first. */
function fit(parts: Part[], width: number): string {
  const kept: Part[] = [];
  let used = 0;
  for (const p of parts) {
    const cost = p.text.length + (kept.length ? SEP.length : 0);
    if (used + cost > width) continue;
    kept.push(p);
    used += cost;
  }
  return kept
    .sort((a, b) => a.order - b.order)
    .map((p) => p.text)
    .join(SEP);
}

/**
 * The status line: host · model · template · session · context · last turn's speeds. When it
 * does not fit, it becomes two lines (who, then numbers), and only then drops fields.
 */
export function statusLines(s: ChatState, width: number): string[] {
  const all = [...numbers(s), ...identity(s)];
  const one = all.map((p) => p.text).join(SEP);
  if (one.length <= width) return [fit(all, width)];
  return [fit(identity(s), width), fit(numbers(s), width)];
}
