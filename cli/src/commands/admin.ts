import { Command } from "commander";
import { NanoError, Role } from "@nanollm/shared";
import { connectionOptions } from "./connection.js";
import { plural } from "./format.js";
import { ago, durationArg, sessionLine } from "./sessionList.js";
import { modelCommands, withClient } from "./models.js";

const ROLE_NAMES: Record<number, string> = { [Role.ROLE_USER]: "user", [Role.ROLE_BOT]: "bot", [Role.ROLE_TOOL]: "tool", [Role.ROLE_SYSTEM]: "system" };

export function adminCommands(): Command[] {
  const sessions = connectionOptions(new Command("sessions").description("list, show and remove sessions (ids may be shortened to their first characters)"))
    // Without a subcommand: list. With an unknown one: say so, rather than take it for list's argument.
    .argument("[command]")
    .action(async (command: string | undefined, _opts: unknown, cmd: Command) => {
      if (command === undefined) return listSessions(cmd);
      const known = sessions.commands.map((c) => c.name());
      throw new NanoError("INVALID_ARGUMENT", `There is no \`sessions ${command}\` command; use one of ${known.join(", ")}.`);
    });
  const listSessions = withClient(async (client) => {
    const list = await client.listSessions();
    if (list.length === 0) console.log("no sessions");
    for (const s of list.sort((a, b) => b.updatedAtMs - a.updatedAtMs)) console.log(sessionLine(s));
  });
  sessions.command("list").description("list sessions, the most recently used first").action(listSessions);
  sessions.command("show <id>").description("print a session's history").action(
    withClient(async (client, id) => {
      const s = await client.getSession(id!, true);
      console.log(`session ${s.sessionId} · ${s.model} · ${s.chatTemplate} · ${s.contextUsed}/${s.contextSize} tokens · created ${new Date(s.createdAtMs).toISOString()} · used ${ago(s.updatedAtMs)}`);
      if (s.systemPrompt) console.log(`[system] ${s.systemPrompt}`);
      for (const m of s.history) console.log(`[${ROLE_NAMES[m.role] ?? "?"}] ${m.text}`);
    }),
  );
  sessions.command("rm <id>").description("delete a session").action(
    withClient(async (client, id) => {
      const full = (await client.getSession(id!)).sessionId;
      await client.deleteSession(full);
      console.log(`deleted ${full}`);
    }),
  );
  sessions
    .command("prune")
    .description("delete the sessions not used for a while")
    .requiredOption("--older-than <age>", "how long unused: 30m, 12h, 7d, 2w", durationArg)
    .action(
      withClient(async (client) => {
        const cmd = sessions.commands.find((c) => c.name() === "prune")!;
        const cutoff = Date.now() - (cmd.opts() as { olderThan: number }).olderThan;
        const old = (await client.listSessions()).filter((s) => s.updatedAtMs < cutoff && !s.busy);
        for (const s of old) await client.deleteSession(s.sessionId);
        console.log(`deleted ${plural(old.length, "session")}`);
      }),
    );
  return [...modelCommands(), sessions];
}
