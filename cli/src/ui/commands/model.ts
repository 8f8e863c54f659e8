import { Message } from "@nanollm/shared";
import { plural } from "../../commands/format.js";
import { shortId } from "./sessions.js";
import { CommandError, type CommandContext, type SlashCommand } from "./types.js";

/** The switch each chat was asked to confirm: typing the same /model NAME again does it. */
const asked = new WeakMap<CommandContext, string>();

/** The conversation as a new session on another model takes it: texts only (another vocabulary re-reads them). */
function carried(history: readonly Message[]): { messages: Message[]; images: number } {
  let images = 0;
  const messages = history.map((m) => {
    images += m.images.length;
    return Message.fromPartial({ role: m.role, text: m.text });
  });
  return { messages, images };
}

export const model: SlashCommand = {
  name: "model",
  usage: "[NAME]",
  help: "show the models, or continue this conversation on model NAME in a new session (asks first; the old session stays)",
  async run(args, ctx) {
    const name = args.trim();
    const current = ctx.state().session;
    if (name === "") {
      asked.delete(ctx);
      const local = await ctx.client.listLocalModels();
      const lines = local.models.map((m) => `${m.name === current.model ? "*" : " "} ${m.name}  ${m.quantization || m.architecture}${m.images ? "  images" : ""}${m.loaded ? "  loaded" : ""}`);
      ctx.info(`model ${current.model}; /model NAME continues this conversation on another:\n${lines.join("\n") || "  (the daemon's models folder is empty)"}`);
      return;
    }
    if (/\s/.test(name)) throw new CommandError(`/model takes one model name, not "${name}".`);
    if (name === current.model) throw new CommandError(`This session already runs ${name}.`);
    // The daemon's copy: the screen's may not have heard of a turn that just ended (or another client's).
    const now = await ctx.client.getSession(current.sessionId, true);
    if (asked.get(ctx) !== name) {
      asked.set(ctx, name);
      ctx.info(`Continue on ${name}? A new session on ${name} starts with this conversation (${plural(now.messageCount, "message")}, read again by ${name}); session ${shortId(current.sessionId)} stays on ${now.model}. Type /model ${name} again to switch.`);
      return;
    }
    asked.delete(ctx);
    const { messages, images } = carried(now.history);
    // The template is the new model's own choice unless the chat asked for one by name.
    const created = await ctx.client.createSession({ ...ctx.sessionRequest, model: name, systemPrompt: current.systemPrompt, defaults: current.defaults, history: messages });
    ctx.createdSession(created);
    ctx.dispatch({ type: "session", session: created });
    ctx.info(`── session ${shortId(created.sessionId)} · ${created.model} · ${created.chatTemplate} · ${plural(created.messageCount, "message")} carried over${images ? ` (${plural(images, "image")} left out: a new session takes images only with a turn)` : ""}; /session switch ${shortId(current.sessionId)} goes back ──`);
  },
};
