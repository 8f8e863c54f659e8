import { Marked, type MarkedExtension, type Tokens } from "marked";
import { markedTerminal } from "marked-terminal";

const renderers = new Map<number, Marked>();

// marked-terminal renders a tight list item's text token as plain text, dropping its inline
// tokens (**bold**, `code` show their markup): render those inline, fall back otherwise.
const inlineInText: MarkedExtension = {
  renderer: {
    text(token: Tokens.Text | Tokens.Escape) {
      return "tokens" in token && token.tokens ? this.parser.parseInline(token.tokens) : false;
    },
  },
};

function rendererFor(width: number): Marked {
  let m = renderers.get(width);
  if (!m) {
    // breaks: a model's single line break is a line break (as it looked while streaming), not a space.
    m = new Marked(markedTerminal({ width, reflowText: true, tab: 2, emoji: false, showSectionPrefix: false }), inlineInText, { breaks: true });
    renderers.set(width, m);
  }
  return m;
}

/**
 * Markdown (code blocks, lists, emphasis, headings, tables) as ANSI-styled text wrapped to
 * `width` columns. Model output is untrusted: if the renderer fails, the text is shown as is.
 */
export function renderMarkdown(text: string, width: number): string {
  try {
    const out = rendererFor(Math.max(20, width)).parse(text, { async: false });
    return out.replace(/\s+$/, "");
  } catch {
    return text.replace(/\s+$/, "");
  }
}
