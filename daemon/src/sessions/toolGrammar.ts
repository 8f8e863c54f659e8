import type { FunctionSet } from "../functions/FunctionSet.js";
import type { Session } from "./Session.js";

type Grammar = NonNullable<ReturnType<Session["host"]["toolCallGrammar"]>>;

export interface ToolGrammar {
  /** Text that opens a tool call in this template (e.g. "<tool_call>"). */
  opener: string;
  /** The grammar constraining the call's JSON (and its closing text); each use starts fresh. */
  state: () => Grammar;
}

const cache = new WeakMap<FunctionSet, Map<string, Promise<ToolGrammar | undefined>>>();

/**
 * For a template that delimits tool calls, the grammar that makes the JSON after the opener a
 * valid call of one of the session's functions; undefined when there is nothing to constrain.
 */
export function toolGrammar(session: Session): Promise<ToolGrammar | undefined> {
  const pattern = session.template.tool_call;
  if (!pattern || session.functions.empty) return Promise.resolve(undefined);
  let byTemplate = cache.get(session.functions);
  if (!byTemplate) cache.set(session.functions, (byTemplate = new Map()));
  let found = byTemplate.get(pattern);
  if (!found) {
    found = build(session, pattern);
    byTemplate.set(pattern, found);
  }
  return found;
}

async function build(session: Session, pattern: string): Promise<ToolGrammar | undefined> {
  const [open, close] = pattern.split("(.*?)");
  const opener = literal(open ?? "");
  const closing = literal(close ?? "");
  if (!opener || closing === undefined) return undefined;
  // A closing control token (e.g. <|eom_id|>) ends generation by itself once the JSON is done.
  const closingText = /^<\|.*\|>$/.test(closing) ? "" : closing;
  const grammar = session.host.toolCallGrammar(session.functions.toolCallSchema(), closingText);
  return grammar && { opener, state: () => grammar };
}

/** The literal text a regex piece matches, ignoring optional newlines; undefined if not literal. */
function literal(piece: string): string | undefined {
  const stripped = piece.replace(/\\n\?/g, "");
  if (/(?<!\\)[()[\]?*+{}|^$.]/.test(stripped)) return undefined;
  return stripped.replace(/\\(.)/g, "$1");
}
