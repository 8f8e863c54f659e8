import { Role, type SessionInfo } from "@nanollm/shared";
import { sessionLine } from "../../commands/sessionList.js";
import { CommandError, type CommandContext, type SlashCommand } from "./types.js";

/** The first 8 characters of a session id, as the status line shows it. */
export const shortId = (id: string) => id.slice(0, 8);

/** Shows a session's conversation on the screen, so the next message visibly continues it. */
export function showConversation(ctx: Pick<CommandContext, "dispatch" | "info">, session: SessionInfo): void {
  ctx.info(`── session ${shortId(session.sessionId)} · ${session.messageCount} messages ──`);
  for (const m of session.history) {
    if (m.role === Role.ROLE_USER) ctx.dispatch({ type: "entry", kind: "user", text: m.text });
    else if (m.role === Role.ROLE_BOT) ctx.dispatch({ type: "entry", kind: "bot", text: m.text });
  }
}

async function switchTo(ctx: CommandContext, prefix: string): Promise<void> {
  if (prefix === "") throw new CommandError("Say which session: /session switch ID (see /session list).");
  // The daemon finds a session by the start of its id, as everywhere else.
  const session = await ctx.client.getSession(prefix, true);
  ctx.dispatch({ type: "session", session });
  showConversation(ctx, session);
}

export const session: SlashCommand = {
  name: "session",
  usage: "new|list|switch ID",
  help: "start a new session, list the daemon's sessions, or continue another one",
  complete: (args, ctx) => {
    const words = args.split(" ");
    if (words.length === 1) return ["new", "list", "switch"];
    return words.length === 2 && words[0] === "switch" ? ctx.known.sessionIds.map(shortId) : [];
  },
  async run(args, ctx) {
    const [verb = "list", id = ""] = args.split(/\s+/).filter(Boolean);
    switch (verb) {
      case "list": {
        const list = await ctx.client.listSessions();
        const current = ctx.state().session.sessionId;
        ctx.info(list.length ? list.sort((a, b) => b.updatedAtMs - a.updatedAtMs).map((s) => `${s.sessionId === current ? "*" : " "} ${sessionLine(s, 8)}`).join("\n") : "no sessions");
        return;
      }
      case "new": {
        const created = await ctx.client.createSession(ctx.sessionRequest);
        ctx.createdSession(created);
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
