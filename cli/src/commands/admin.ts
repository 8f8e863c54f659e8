import { Command } from "commander";
import { NanoError, Role } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";
import { connect, connectionOptions, type ConnectionFlags } from "./connection.js";
import { plural } from "./format.js";
import { ago, durationArg, sessionLine } from "./sessionList.js";

/** Runs `fn` with a client for --host and closes it after. */
function withClient(fn: (client: NanoClient, ...args: string[]) => Promise<void>) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const client = await connect(cmd.optsWithGlobals() as ConnectionFlags);
    try {
      await fn(client, ...(args.slice(0, -2) as string[]));
    } finally {
      client.close();
    }
  };
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const ROLE_NAMES: Record<number, string> = { [Role.ROLE_USER]: "user", [Role.ROLE_BOT]: "bot", [Role.ROLE_TOOL]: "tool", [Role.ROLE_SYSTEM]: "system" };

export function adminCommands(): Command[] {
  const models = connectionOptions(new Command("models").description("show the daemon and its loaded models"))
    .action(
      withClient(async (client) => {
        const info = await client.serverInfo();
        if (info.insecure) console.log(`WARNING: this daemon serves the network without ${[info.tls ? "" : "TLS", info.auth ? "" : "authentication"].filter(Boolean).join(" and ")} (--insecure): anyone who can reach it can read and drive every session.`);
        console.log(`nanollm ${info.version} · backend ${info.backend} (${info.binary} llama.cpp) · threads ${info.threads} per step, ${info.batchThreads} per batch · ${info.parallel} sequences · ${info.sessions} session${info.sessions === 1 ? "" : "s"}`);
        for (const m of await client.listModels()) {
          console.log(`${m.name}  ${m.architecture}  ${(m.parameters / 1e6).toFixed(1)}M params  ${mb(m.sizeBytes)}  ctx ${m.contextSize}×${m.sequences}  KV ${mb(m.kvCacheBytes)} ${m.kvCacheType}  template ${m.defaultTemplate}`);
          console.log(`  ${m.file}`);
        }
        console.log(`${info.tls ? "TLS" : "plaintext"} · ${info.auth ? "authentication on" : "no authentication"} · you are ${info.identity}${info.admin ? " (admin)" : ""}`);
      }),
    );

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
  return [models, sessions];
}
