import { Command } from "commander";
import { connect, connectionOptions, type ConnectionFlags } from "./connection.js";
import { templateFields } from "../files/userFiles.js";
import { loadDaemon } from "./loadDaemon.js";

/** `nanollm templates list|render`: list asks the daemon; render runs here, with the daemon package. */
export function templatesCommand(): Command {
  const templates = new Command("templates").description("list the daemon's chat templates, or render messages with one");
  connectionOptions(templates.command("list", { isDefault: true }).description("list the daemon's built-in chat templates"))
    .action(async (opts: ConnectionFlags) => {
      const client = await connect(opts);
      try {
        for (const t of await client.listTemplates()) {
          const traits = [t.hasSystem ? "system" : "no system", t.toolCalls ? "tool calls" : "", t.stop.length ? `stops ${JSON.stringify(t.stop)}` : ""].filter(Boolean);
          console.log(`${t.name.padEnd(16)} ${traits.join(", ")}`);
        }
      } finally {
        client.close();
      }
    });
  // --user and --bot may repeat and interleave; both push onto one list so their order is kept.
  const messages: { role: "user" | "bot"; text: string }[] = [];
  const push = (role: "user" | "bot") => (text: string) => {
    messages.push({ role, text });
    return text;
  };
  templates
    .command("render <name|file.json>")
    .description("print exactly the prompt the messages render to (no newline added; needs the daemon package)")
    .option("--system <text>", "a system message first (used only if the template has a system format)")
    .option("--user <text>", "a user message (repeatable)", push("user"))
    .option("--bot <text>", "a bot message (repeatable)", push("bot"))
    .action(async (name: string, opts: { system?: string }) => {
      const { TemplateRegistry, renderToString } = await loadDaemon("templates render");
      const registry = new TemplateRegistry();
      const fields = templateFields(name);
      const template = "chatTemplateJson" in fields ? registry.parse(fields.chatTemplateJson) : registry.resolve(name);
      const all = opts.system !== undefined && template.system !== undefined ? [{ role: "system" as const, text: opts.system }, ...messages] : messages;
      process.stdout.write(renderToString(template, all));
    });
  return templates;
}
