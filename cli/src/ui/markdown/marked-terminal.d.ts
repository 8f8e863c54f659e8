// marked-terminal ships no types (and @types/marked-terminal pins marked < 12): the part we use.
declare module "marked-terminal" {
  import type { MarkedExtension } from "marked";
  export interface TerminalRendererOptions {
    width?: number;
    reflowText?: boolean;
    tab?: number | string;
    emoji?: boolean;
    showSectionPrefix?: boolean;
    unescape?: boolean;
  }
  export function markedTerminal(options?: TerminalRendererOptions, highlightOptions?: Record<string, unknown>): MarkedExtension;
}
