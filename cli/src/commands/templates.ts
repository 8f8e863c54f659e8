import { Command } from "commander";
import { TemplateRegistry } from "@nanollm/daemon/dist/templates/TemplateRegistry.js";
import { renderToString, type RenderMessage } from "@nanollm/daemon/dist/templates/render.js";

/** `nanollm templates list|render`: works offline, without a daemon. */
export function templatesCommand(): Command {
  const templates = new Command("templates").description("list chat templates, or render messages with one");
  templates
    .command("list", { isDefault: true })
    .description("list the built-in chat templates")
    .action(() => {
      const registry = new TemplateRegistry();
      for (const name of registry.names()) {
        const t = registry.resolve(name);
        const traits = [t.system !== undefined ? "system" : "no system", t.tool_call ? "tool calls" : "", t.stop?.length ? `stops ${JSON.stringify(t.stop)}` : ""].filter(Boolean);
        console.log(`${name.padEnd(16)} ${traits.join(", ")}`);
      }
    });
  // --user and --bot may repeat and interleave; both push onto one list so their order is kept.
  const messages: RenderMessage[] = [];
  const push = (role: RenderMessage["role"]) => (text: string) => {
    messages.push({ role, text });
    return text;
  };
  templates
    .command("render <name|file>")
    .description("print exactly the prompt the messages render to (no newline added)")
    .option("--system <text>", "a system message first (used only if the template has a system format)")
    .option("--user <text>", "a user message (repeatable)", push("user"))
    .option("--bot <text>", "a bot message (repeatable)", push("bot"))
    .action((name: string, opts: { system?: string }) => {
      const template = new TemplateRegistry().resolve(name);
      const all: RenderMessage[] = opts.system !== undefined && template.system !== undefined ? [{ role: "system", text: opts.system }, ...messages] : messages;
      process.stdout.write(renderToString(template, all));
    });
  return templates;
}
