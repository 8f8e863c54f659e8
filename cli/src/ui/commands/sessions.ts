import { Role, type SessionInfo } from "@nanollm/shared";
import { CommandError, type CommandContext, type SlashCommand } from "./types.js";

/** The first 8 characters of a session id, as the status line shows it. */
export const shortId = (id: string) => id.slice(0, 8);

function describe(s: SessionInfo, current: string): string {
  const mark = s.sessionId === current ? "*" : " ";
  return `${mark} ${shortId(s.sessionId)}  ${s.model}  ${s.chatTemplate}  ${s.messageCount} messages  ${s.contextUsed}/${s.contextSize} tokens${s.busy ? "  (busy)" : ""}`;
}

async function switchTo(ctx: CommandContext, prefix: string): Promise<void> {
  if (prefix === "") throw new CommandError("Say which session: /session switch ID (see /session list).");
  const matches = (await ctx.client.listSessions()).filter((s) => s.sessionId.startsWith(prefix));
  if (matches.length === 0) throw new CommandError(`There is no session "${prefix}"; /session list shows them.`);
  if (matches.length > 1) throw new CommandError(`"${prefix}" matches ${matches.length} sessions; type more of the id.`);
  const session = await ctx.client.getSession(matches[0]!.sessionId, true);
  ctx.dispatch({ type: "session", session });
  ctx.info(`── session ${shortId(session.sessionId)} · ${session.messageCount} messages ──`);
  // Replay the history so the screen shows the conversation the next message continues.
  for (const m of session.history) {
    if (m.role === Role.ROLE_USER) ctx.dispatch({ type: "entry", kind: "user", text: m.text });
    else if (m.role === Role.ROLE_BOT) ctx.dispatch({ type: "entry", kind: "bot", text: m.text });
  }
}

export const session: SlashCommand = {
  name: "session",
  usage: "new|list|switch ID",
  help: "start a new session, list the daemon's sessions, or continue another one",
  complete: (args) => (args.includes(" ") ? [] : ["new", "list", "switch"]),
  async run(args, ctx) {
    const [verb = "list", id = ""] = args.split(/\s+/).filter(Boolean);
    switch (verb) {
      case "list": {
        const list = await ctx.client.listSessions();
        ctx.info(list.length ? list.map((s) => describe(s, ctx.state().session.sessionId)).join("\n") : "no sessions");
        return;
      }
      case "new": {
        const created = await ctx.client.createSession(ctx.sessionRequest);
        ctx.dispatch({ type: "session", session: created });
        ctx.info(`── new session ${shortId(created.sessionId)} · ${created.model} · ${created.chatTemplate} ──`);
        return;
      }
      case "switch":
        return switchTo(ctx, id);
      default:
        throw new CommandError(`/session takes new, list or switch ID, not "${verb}".`);
    }
  },
};
