import type { CompletionContext, SlashCommand } from "./types.js";

/**
 * A line that is a slash command: "/name args". A line whose first word holds another slash
 * ("/home/me/notes.txt says ...") is a path, and goes to the model as text.
 */
export function parseCommandLine(line: string): { name: string; args: string } | undefined {
  const match = /^\/(\S*)(?:\s+([\s\S]*))?$/.exec(line.trim());
  if (!match || match[1]!.includes("/")) return undefined;
  return { name: match[1]!.toLowerCase(), args: (match[2] ?? "").trim() };
}

export function findCommand(commands: readonly SlashCommand[], name: string): SlashCommand | undefined {
  return commands.find((c) => c.name === name || c.aliases?.includes(name));
}

/** The widest command head /help lines up descriptions after. */
const HEAD_COLUMN = 20;

/** /help, generated from the registry. */
export function helpText(commands: readonly SlashCommand[]): string {
  const rows = commands.map((c) => {
    const head = `/${c.name}${c.usage ? ` ${c.usage}` : ""}`;
    const aliases = c.aliases?.length ? ` (also ${c.aliases.map((a) => `/${a}`).join(", ")})` : "";
    return { head, text: c.help + aliases };
  });
  // Heads are padded to a short column; a longer head gets its help on the next line, so one long
  // usage does not push every description past the edge of an 80-column terminal.
  const width = Math.min(HEAD_COLUMN, Math.max(...rows.map((r) => r.head.length)));
  return [
    "Commands:",
    ...rows.map((r) => (r.head.length <= width ? `  ${r.head.padEnd(width)}  ${r.text}` : `  ${r.head}\n  ${"".padEnd(width)}  ${r.text}`)),
    "Keys: Enter sends · Esc or Ctrl+C stops a reply · Ctrl+C twice quits · ↑/↓ history · Tab completes",
    '      """ starts and ends a multi-line message (pasted text keeps its lines) · Ctrl+A/E/U/K/W edit',
  ].join("\n");
}

export interface Completion {
  /** The input line after completing as far as every candidate agrees. */
  line: string;
  /** The candidates when more than one remains (shown under the input). */
  candidates: readonly string[];
}

/** Tab completion of command names, then of a command's arguments. */
export function completeLine(ctx: CompletionContext, line: string): Completion | undefined {
  const commands = ctx.commands;
  if (!line.startsWith("/") || line.includes("\n")) return undefined;
  const space = line.indexOf(" ");
  if (space < 0) {
    const prefix = line.slice(1).toLowerCase();
    const names = commands.flatMap((c) => [c.name, ...(c.aliases ?? [])]).filter((n) => n.startsWith(prefix));
    return finish("/", names, prefix, " ");
  }
  const command = findCommand(commands, line.slice(1, space).toLowerCase());
  if (!command?.complete) return undefined;
  const head = line.slice(0, space + 1);
  const rest = line.slice(space + 1);
  // Complete the last word of the arguments ("/set te" -> "/set temperature ").
  const cut = rest.lastIndexOf(" ") + 1;
  const prefix = rest.slice(cut);
  return finish(head + rest.slice(0, cut), command.complete(rest, ctx).filter((c) => c.startsWith(prefix)), prefix, " ");
}

function finish(head: string, options: readonly string[], prefix: string, after: string): Completion | undefined {
  const unique = [...new Set(options)].sort();
  if (unique.length === 0) return undefined;
  if (unique.length === 1) return { line: head + unique[0]! + after, candidates: [] };
  let common = unique[0]!;
  for (const o of unique) while (!o.startsWith(common)) common = common.slice(0, -1);
  return { line: head + (common.length > prefix.length ? common : prefix), candidates: unique };
}
