#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { NanoError, VERSION } from "@nanollm/shared";
import { adminCommands } from "./commands/admin.js";
import { chatCommand } from "./commands/chat.js";
import { pullCommand } from "./commands/pull.js";
import { serveCommand } from "./commands/serve.js";
import { templatesCommand } from "./commands/templates.js";

const program = new Command("nanollm")
  .description("a chat daemon with per-session KV caches, and its terminal client")
  .version(VERSION)
  .addCommand(serveCommand())
  .addCommand(chatCommand())
  .addCommand(pullCommand())
  .addCommand(templatesCommand());
for (const cmd of adminCommands()) program.addCommand(cmd);
program.exitOverride();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  // A user-facing error is one sentence; anything else is a bug and keeps its stack.
  process.stderr.write(err instanceof NanoError ? `nanollm: ${err.message}\n` : `nanollm: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
