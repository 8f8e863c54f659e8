import type { NativeModel, NativeModelInfo } from "./native.js";
import type { Segment, Token } from "./types.js";

/** Tokens that precede a piece when detokenizing it, so a leading space comes out right. */
const CONTEXT_TOKENS = 3;

/**
 * Text ↔ tokens for one model. SentencePiece-style vocabularies add a leading space to the text
 * they tokenize; a piece that continues a prompt must not get one, so it is tokenized after a
 * newline (or the BOS text) that is then cut off again, as node-llama-cpp did.
 */
export class Tokenizer {
  private readonly eog: Set<Token>;
  private readonly newline: Token[];

  constructor(
    private readonly model: NativeModel,
    private readonly vocab: NativeModelInfo,
  ) {
    this.eog = new Set(vocab.eog);
    this.newline = Array.from(model.tokenize("\n", false));
  }

  /** A rendered prompt: control text may form control tokens, plain text never does; BOS first. */
  segments(segments: readonly Segment[]): Token[] {
    const out: Token[] = [];
    for (const seg of segments) {
      if (seg.kind === "image") {
        for (const piece of seg.image.pieces) {
          if (piece.kind === "text") for (const id of piece.tokens) out.push(id);
          else for (let i = 0; i < piece.nPos; i++) out.push(piece.placeholder);
        }
        continue;
      }
      const ids = seg.kind === "tokens" ? seg.ids : this.text(seg.text, seg.kind === "control", out.length > 0);
      for (const id of ids) out.push(id);
    }
    const bos = this.vocab.bos;
    if (this.vocab.addBos && bos >= 0 && out[0] !== bos) out.unshift(bos);
    return out;
  }

  text(text: string, special: boolean, continuation: boolean): Token[] {
    if (text === "") return [];
    if (!continuation) return Array.from(this.model.tokenize(text, special));
    const leading = countLeadingSpaces(text);
    if (text.startsWith("\n")) {
      const plain = Array.from(this.model.tokenize(text, special));
      if (this.detokenize(plain, undefined, special).startsWith("\n")) return plain;
    }
    const withNewline = Array.from(this.model.tokenize(`\n${text}`, special));
    if (this.newline.length > 0 && this.newline.every((t, i) => withNewline[i] === t)) {
      const rest = withNewline.slice(this.newline.length);
      if (!special || countLeadingSpaces(this.detokenize(rest, undefined, special)) === leading) return rest;
    }
    return Array.from(this.model.tokenize(text, special));
  }

  detokenize(ids: readonly Token[], before: readonly Token[] | undefined, special: boolean): string {
    if (ids.length === 0) return "";
    const context = before ? before.slice(-CONTEXT_TOKENS) : [];
    if (context.length === 0) return this.model.detokenize(Int32Array.from(ids), special);
    const prefix = this.model.detokenize(Int32Array.from(context), special);
    if (prefix === "") return this.model.detokenize(Int32Array.from(ids), special);
    const whole = this.model.detokenize(Int32Array.from([...context, ...ids]), special);
    return whole.startsWith(prefix) ? whole.slice(prefix.length) : this.model.detokenize(Int32Array.from(ids), special);
  }

  isEog(id: Token): boolean {
    return this.eog.has(id);
  }
}

function countLeadingSpaces(text: string): number {
  let n = 0;
  while (n < text.length && text[n] === " ") n++;
  return n;
}
