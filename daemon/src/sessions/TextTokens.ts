import { setImmediate as nextTurn } from "node:timers/promises";
import type { ModelHost } from "../engine/ModelHost.js";
import type { Segment } from "../engine/types.js";
import { appendAll } from "./appendAll.js";

/**
 * Characters tokenized in one synchronous call. Longer texts are cut at a space and the event loop
 * gets a turn between pieces: a 1,000,000-character message took ~300 ms in one call, during which
 * no other client was served.
 */
export const TOKENIZE_CHUNK_CHARS = 16_384;

/**
 * Most ids handed to the engine in one "tokens" segment. Its tokenizer once appended a segment's
 * ids with one spread call, and ~100,000 arguments overflowed the stack (a 400,000-character turn
 * answered INTERNAL "Maximum call stack size exceeded"); bounded pieces keep any engine safe.
 */
const SEGMENT_IDS = 4096;

/**
 * One session's tokenization of its rendered conversation. Each message text is tokenized once
 * (in pieces, so no single call blocks the event loop for long) and remembered while renderings
 * still use it; template glue is tokenized by the engine, its length remembered per text. So a
 * prompt's length costs additions, not a tokenization of the whole conversation: context wrapping
 * used to re-tokenize everything once per dropped turn (41.9 s with the loop blocked for 1,000
 * history pairs and a 100,000-character turn).
 */
export class TextTokens {
  // [plain, continued] ids per text; `old` holds the previous generation (see sweep()).
  private now: [Map<string, readonly number[]>, Map<string, readonly number[]>] = [new Map(), new Map()];
  private old: [Map<string, readonly number[]>, Map<string, readonly number[]>] = [new Map(), new Map()];
  /** Lengths of template glue (control text), alone at the start and after other tokens. */
  private readonly glue: [Map<string, number>, Map<string, number>] = [new Map(), new Map()];

  constructor(private readonly host: ModelHost) {}

  /** Ids of plain text as the engine's tokenizeText gives them, computed in pieces. */
  of(text: string, continued = false): readonly number[] {
    const flag = continued ? 1 : 0;
    const hit = this.now[flag].get(text) ?? this.old[flag].get(text);
    if (hit) {
      this.now[flag].set(text, hit);
      return hit;
    }
    const ids: number[] = [];
    for (const [i, piece] of pieces(text).entries()) appendAll(ids, this.host.tokenizeText(piece, continued || i > 0));
    this.now[flag].set(text, ids);
    return ids;
  }

  /** As of(), but yields to the event loop between pieces; later of() calls find the result. */
  async prepare(text: string, continued = false): Promise<readonly number[]> {
    const flag = continued ? 1 : 0;
    const hit = this.now[flag].get(text) ?? this.old[flag].get(text);
    if (hit) return this.of(text, continued);
    const ids: number[] = [];
    for (const [i, piece] of pieces(text).entries()) {
      if (i > 0) await nextTurn();
      appendAll(ids, this.host.tokenizeText(piece, continued || i > 0));
    }
    this.now[flag].set(text, ids);
    return ids;
  }

  /** Tokenizes every message text of `segments` ahead of ids()/count(), a piece at a time. */
  async prepareAll(segments: readonly Segment[]): Promise<void> {
    let sinceYield = 0;
    for (const [i, seg] of segments.entries()) {
      if (seg.kind !== "text" || this.has(seg.text, i > 0)) continue;
      await this.prepare(seg.text, i > 0);
      sinceYield += seg.text.length;
      if (sinceYield >= TOKENIZE_CHUNK_CHARS) {
        sinceYield = 0;
        await nextTurn();
      }
    }
  }

  /** Token ids of a rendered prompt, exactly as the engine's tokenize() would give them. */
  ids(segments: readonly Segment[]): number[] {
    return this.host.tokenize(segments.flatMap((seg, i) => this.asTokens(seg, i > 0)));
  }

  /** ids(segments).length, from remembered lengths. */
  count(segments: readonly Segment[]): number {
    let total = 0;
    segments.forEach((seg, i) => (total += i === 0 ? this.firstLength(seg) : this.laterLength(seg)));
    return total;
  }

  /**
   * Starts a new generation: texts not used since the previous sweep are forgotten. Called when
   * the conversation's rendering is recomputed, so dropped or replaced messages do not stay.
   */
  sweep(): void {
    this.old = this.now;
    this.now = [new Map(), new Map()];
  }

  private has(text: string, continued: boolean): boolean {
    const flag = continued ? 1 : 0;
    return this.now[flag].has(text) || this.old[flag].has(text);
  }

  /** Message text and long id lists become "tokens" segments the engine can append safely. */
  private asTokens(seg: Segment, continued: boolean): Segment[] {
    if (seg.kind === "control" || seg.kind === "image") return [seg];
    const ids = seg.kind === "text" ? this.of(seg.text, continued) : seg.ids;
    if (ids.length <= SEGMENT_IDS) return [{ kind: "tokens", ids, text: seg.text }];
    const out: Segment[] = [];
    for (let at = 0; at < ids.length; at += SEGMENT_IDS) out.push({ kind: "tokens", ids: ids.slice(at, at + SEGMENT_IDS), text: "" });
    return out;
  }

  /** The first segment's length includes the BOS the engine may put before it. */
  private firstLength(seg: Segment): number {
    if (seg.kind !== "control") return this.ids([seg]).length;
    // Template glue: a handful of strings per template, so the engine tokenizes each once.
    return remember(this.glue[0], seg.text, () => this.host.tokenize([seg]).length);
  }

  private laterLength(seg: Segment): number {
    switch (seg.kind) {
      case "tokens":
        return seg.ids.length;
      case "text":
        return this.of(seg.text, true).length;
      case "image":
        return seg.image.pieces.reduce((n, piece) => n + (piece.kind === "text" ? piece.tokens.length : piece.nPos), 0);
      case "control":
        // After any token, the way the engine continues a prompt; the BOS decision is the same in both calls.
        return remember(this.glue[1], seg.text, () => this.host.tokenize([LEAD, seg]).length - this.host.tokenize([LEAD]).length);
      default:
        return seg satisfies never;
    }
  }
}

const LEAD: Segment = { kind: "tokens", ids: [0], text: "" };

function remember(map: Map<string, number>, key: string, compute: () => number): number {
  let n = map.get(key);
  if (n === undefined) {
    n = compute();
    // Template glue is a handful of strings per template; the bound only guards odd templates.
    if (map.size > 1024) map.clear();
    map.set(key, n);
  }
  return n;
}

/**
 * `text` cut into pieces of at most TOKENIZE_CHUNK_CHARS, each cut just before a space that
 * follows a non-space (where tokenizers start a new word anyway), else at the limit (never inside
 * a surrogate pair). Short texts are one piece, so they tokenize exactly as before.
 */
export function pieces(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  while (text.length - start > TOKENIZE_CHUNK_CHARS) {
    let cut = start + TOKENIZE_CHUNK_CHARS;
    const floor = start + TOKENIZE_CHUNK_CHARS / 2;
    let at = cut;
    while (at > floor && !(text[at] === " " && text[at - 1] !== " ")) at--;
    if (at > floor) cut = at;
    else if (/[\udc00-\udfff]/.test(text[cut] ?? "")) cut--;
    out.push(text.slice(start, cut));
    start = cut;
  }
  out.push(text.slice(start));
  return out;
}
