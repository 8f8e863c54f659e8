import { Role } from "@nanollm/shared";
import { TemplateRegistry } from "@nanollm/daemon/dist/templates/TemplateRegistry.js";
import { CommandError, type CommandContext, type SlashCommand } from "./types.js";

const clip = (text: string, n = 60) => (text.length > n ? `${text.slice(0, n - 1)}…` : text).replace(/\s+/g, " ");

/** The last user message of the session's history and its index (the messages before it stay). */
async function lastUserMessage(ctx: CommandContext): Promise<{ index: number; text: string } | undefined> {
  const { history } = await ctx.client.getSession(ctx.state().session.sessionId, true);
  for (let i = history.length - 1; i >= 0; i--) {
    const m = history[i]!;
    if (m.role === Role.ROLE_USER) return { index: i, text: m.text };
  }
  return undefined;
}

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
    const last = await lastUserMessage(ctx);
    if (!last) throw new CommandError("There is nothing to undo: the conversation has no messages yet.");
    ctx.dispatch({ type: "session", session: await ctx.client.truncateSession(ctx.state().session.sessionId, last.index) });
    ctx.info(`undone: "${clip(last.text)}" and its reply are no longer part of the conversation`);
  },
};

export const retry: SlashCommand = {
  name: "retry",
  help: "replace the last reply with a new one to the same message",
  async run(_args, ctx) {
    const last = await lastUserMessage(ctx);
    if (!last) throw new CommandError("There is nothing to retry: send a message first.");
    const { session, params } = ctx.state();
    ctx.dispatch({ type: "session", session: await ctx.client.truncateSession(session.sessionId, last.index) });
    if (params.doSample !== true && session.defaults?.doSample !== true) ctx.info("(greedy decoding repeats the same reply; /set do_sample true varies it)");
    await ctx.sendTurn(last.text);
  },
};

export const system: SlashCommand = {
  name: "system",
  usage: "[TEXT]",
  help: "show the system prompt, or set it to TEXT (the conversation is kept)",
  async run(args, ctx) {
    const id = ctx.state().session.sessionId;
    if (args === "") {
      const { systemPrompt } = await ctx.client.getSession(id);
      ctx.info(systemPrompt ? `system prompt: ${systemPrompt}` : "no system prompt (/system TEXT sets one)");
      return;
    }
    ctx.dispatch({ type: "session", session: await ctx.client.updateSession(id, { systemPrompt: args }) });
    ctx.info("system prompt set");
  },
};

let builtinTemplates: readonly string[] | undefined;

export const template: SlashCommand = {
  name: "template",
  usage: "[NAME|FILE.json]",
  help: "show the chat template, or switch to another one (the conversation is kept)",
  // The built-in names: the daemon of this version ships the same templates.
  complete: (args) => (args.includes(" ") ? [] : (builtinTemplates ??= new TemplateRegistry().names())),
  async run(args, ctx) {
    const id = ctx.state().session.sessionId;
    const session = args === "" ? await ctx.client.getSession(id) : await ctx.client.updateSession(id, { chatTemplate: args });
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
