#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { NanoError, VERSION } from "@nanollm/shared";
import { adminCommands } from "./commands/admin.js";
import { certsCommand } from "./commands/certs.js";
import { chatCommand } from "./commands/chat.js";
import { discoverCommand } from "./commands/discover.js";
import { pullCommand } from "./commands/pull.js";
import { serveCommand } from "./commands/serve.js";
import { templatesCommand } from "./commands/templates.js";
import { tokensCommand } from "./commands/tokens.js";

// grpc-js passes the host as the TLS ServerName even when it is an IP (node's DEP0123 warning);
// the certificate is still checked against that IP, so the warning only alarms users.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" ? (rest[0] as { code?: string } | null)?.code : rest[1];
  if (code !== "DEP0123") (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

// A reader that stops early (`nanollm sessions | head`) closes the pipe: the command ends quietly,
// as other Unix tools do, instead of dying on EPIPE with a stack trace.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const program = new Command("nanollm")
  .description("a chat daemon with per-session KV caches, and its terminal client")
  .version(VERSION)
  .addCommand(serveCommand())
  .addCommand(chatCommand())
  .addCommand(pullCommand())
  .addCommand(templatesCommand())
  .addCommand(tokensCommand())
  .addCommand(certsCommand())
  .addCommand(discoverCommand());
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
