import { templateFields, textOrAtFile } from "../../files/userFiles.js";
import { CommandError, type CommandContext, type SlashCommand } from "./types.js";

const clip = (text: string, n = 60) => (text.length > n ? `${text.slice(0, n - 1)}…` : text).replace(/\s+/g, " ");

export const reset: SlashCommand = {
  name: "reset",
  aliases: ["clear"],
  help: "start the conversation over (the system prompt stays)",
  async run(_args, ctx) {
    const session = await ctx.client.resetSession(ctx.state().session.sessionId);
    ctx.dispatch({ type: "session", session });
    ctx.info("── conversation cleared ──");
  },
};

export const undo: SlashCommand = {
  name: "undo",
  help: "drop the last exchange (your message and the reply) from the conversation",
  async run(_args, ctx) {
    const { session } = ctx.state();
    if (!session.lastUserText) throw new CommandError("There is nothing to undo: the conversation has no messages yet.");
    ctx.dispatch({ type: "session", session: await ctx.client.truncateSession(session.sessionId, "last exchange") });
    ctx.info(`undone: "${clip(session.lastUserText)}" and its reply are no longer part of the conversation`);
  },
};

export const retry: SlashCommand = {
  name: "retry",
  help: "replace the last reply with a new one to the same message",
  async run(_args, ctx) {
    const { session, params } = ctx.state();
    const text = session.lastUserText;
    if (!text) throw new CommandError("There is nothing to retry: send a message first.");
    ctx.dispatch({ type: "session", session: await ctx.client.truncateSession(session.sessionId, "last exchange") });
    if (params.doSample !== true && session.defaults?.doSample !== true) ctx.info("(greedy decoding repeats the same reply; /set do_sample true varies it)");
    await ctx.sendTurn(text);
  },
};

export const system: SlashCommand = {
  name: "system",
  usage: "[TEXT|@FILE]",
  help: "show the system prompt, or set it to TEXT or a file's text (the conversation is kept)",
  async run(args, ctx) {
    const current = ctx.state().session;
    if (args === "") {
      ctx.info(current.systemPrompt ? `system prompt: ${current.systemPrompt}` : "no system prompt (/system TEXT sets one)");
      return;
    }
    const session = await ctx.client.updateSession(current.sessionId, { systemPrompt: textOrAtFile(args, "system prompt") });
    ctx.dispatch({ type: "session", session });
    if (!session.templateHasSystem) ctx.info(`system prompt set, but template ${session.chatTemplate} has no system role: the model will not see it (/template NAME picks another)`);
    else ctx.info("system prompt set");
  },
};

export const template: SlashCommand = {
  name: "template",
  usage: "[NAME|FILE.json]",
  help: "show the chat template, or switch to a built-in or a JSON file of yours (the conversation is kept)",
  // The daemon's templates (ListTemplates), read when the chat starts.
  complete: (args, ctx) => (args.includes(" ") ? [] : ctx.known.templates),
  async run(args, ctx) {
    const id = ctx.state().session.sessionId;
    const session = args === "" ? await ctx.client.getSession(id) : await ctx.client.updateSession(id, templateFields(args));
    ctx.dispatch({ type: "session", session });
    ctx.info(`${args === "" ? "template" : "template now"} ${session.chatTemplate} (${session.templateReason})`);
  },
};

export const image: SlashCommand = {
  name: "image",
  help: "attach an image file or http(s) URL to your next message (the model must take images)",
  async run(args, ctx) {
    const source = args.trim().replace(/^(['"])(.*)\1$/, "$2");
    if (!source) throw new CommandError("Give an image file or URL: /image photo.jpg");
    if (!(await ctx.attach([source]))) return;
    ctx.info("type your message: the image goes with it");
  },
};
