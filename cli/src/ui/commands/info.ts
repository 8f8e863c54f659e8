import { statsLine } from "../../commands/format.js";
import { saveTranscript } from "../transcript/saveTranscript.js";
import { helpText } from "./registry.js";
import { describeParams } from "./settings.js";
import { CommandError, type SlashCommand } from "./types.js";

export const help: SlashCommand = {
  name: "help",
  aliases: ["?"],
  help: "list the commands and keys",
  run: (_args, ctx) => ctx.info(helpText(ctx.commands)),
};

export const stats: SlashCommand = {
  name: "stats",
  help: "the last turn's token counts and speeds, and the session's context",
  async run(_args, ctx) {
    const s = await ctx.refreshSession();
    const { lastStats, lastStop, params } = ctx.state();
    ctx.info(
      [
        lastStats && lastStop !== undefined ? `last turn: ${statsLine(lastStats, lastStop)}` : "last turn: none yet",
        `session ${s.sessionId} · ${s.messageCount} messages · context ${s.contextUsed}/${s.contextSize} tokens · ${s.cachedTokens} cached`,
        `settings: ${describeParams(params)}`,
      ].join("\n"),
    );
  },
};

export const functions: SlashCommand = {
  name: "functions",
  help: "list the functions the model may call (enable them with chat --builtins DATE,TIME or --functions FILE.mjs)",
  async run(_args, ctx) {
    const { functions: list } = await ctx.refreshSession();
    if (list.length === 0) return ctx.info("no functions enabled: start chat with --builtins DATE,TIME or --functions FILE.mjs");
    ctx.info(list.map((f) => `${f.name}(${Object.keys((f.parametersJson ? JSON.parse(f.parametersJson) : {}).properties ?? {}).join(", ")}) - ${f.description}`).join("\n"));
  },
};

export const save: SlashCommand = {
  name: "save",
  usage: "FILE.md|FILE.json",
  help: "write the conversation to a Markdown or JSON file",
  async run(args, ctx) {
    if (args === "") throw new CommandError("Say where: /save FILE.md or /save FILE.json.");
    const session = await ctx.client.getSession(ctx.state().session.sessionId, true);
    ctx.info(`saved ${session.history.length} messages to ${saveTranscript(args, session)}`);
  },
};

export const quit: SlashCommand = {
  name: "quit",
  aliases: ["exit", "bye"],
  help: "leave the chat (the session stays on the daemon)",
  run: (_args, ctx) => ctx.quit(),
};
