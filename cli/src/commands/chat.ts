import { Command } from "commander";
import { ChatEvent, NanoError, type CreateSessionRequest, type GenerationParams, type SessionInfo } from "@nanollm/shared";
import { describeImage, readImage, type Attachment } from "../client/attachImages.js";
import type { NanoClient } from "../client/NanoClient.js";
import { connect, connectionOptions, type ConnectionFlags } from "./connection.js";
import { statsLine } from "./format.js";
import { loadFunctions } from "./loadFunctions.js";
import { intArg, numArg, paramsFromFlags, textOrFile, type SamplingFlags } from "./options.js";

interface ChatFlags extends SamplingFlags, ConnectionFlags {
  model?: string;
  chatTemplate?: string;
  systemPrompt?: string;
  prompt: string[];
  json?: boolean;
  session?: string;
  functions?: string;
  builtins?: string[];
  image: string[];
}

export function chatCommand(): Command {
  return connectionOptions(new Command("chat").description("chat with the daemon: an interactive TUI, or one turn per --prompt (or piped stdin)"))
    .option("-m, --model <name|path>", "model for the session (default: the daemon's)")
    .option("--chat-template <name|file>", "chat template name or JSON file (default: chosen from the model)")
    .option("--system-prompt <text|file>", "system prompt, or a file holding it", textOrFile)
    .option("--prompt <text|file>", "a user turn (repeat for several); runs without the TUI", (v: string, acc: string[]) => [...acc, textOrFile(v)], [])
    .option("--max-new-tokens <n>", "most tokens a reply may have", intArg(1, 32768))
    .option("--min-new-tokens <n>", "fewest tokens a reply has before it may end", intArg(0, 32768))
    .option("--do-sample", "sample instead of greedy decoding")
    .option("--temperature <t>", "sampling temperature (with --do-sample)", numArg(0, 5))
    .option("--top-p <p>", "nucleus sampling mass (with --do-sample)", numArg(0, 1))
    .option("--top-k <k>", "sample from the k most likely tokens (with --do-sample)", intArg(0, 100000))
    .option("--repetition-penalty <r>", "penalty for repeated tokens (1 = off)", numArg(0, 10))
    .option("--seed <n>", "random seed for sampling", intArg(0, 2 ** 32 - 1))
    .option("--grammar <gbnf|file>", "a GBNF grammar every reply must follow (structured output)", textOrFile)
    .option("--image <file|url>", "an image for the first --prompt (repeat for several; the model must take images)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--json", "without the TUI: print the chat events as NDJSON (one JSON object per line)")
    .option("--session <id>", "continue an existing session (see `nanollm sessions`)")
    .option("--functions <module.mjs>", "offer the model the upper-case functions this ES module exports (they run here)")
    .option("--builtins <names>", "enable the daemon's built-in functions, e.g. DATE,TIME", (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean))
    .action(async (flags: ChatFlags) => {
      const client = await connect(flags);
      try {
        const params = paramsFromFlags(flags);
        const prompts = flags.prompt.length > 0 ? flags.prompt : process.stdin.isTTY ? undefined : [await readStdin()];
        if (flags.json && !prompts) throw new NanoError("INVALID_ARGUMENT", "--json runs without the TUI: give the prompt with --prompt or on stdin.");
        if (flags.image.length > 0 && !prompts) throw new NanoError("INVALID_ARGUMENT", "--image goes with --prompt or piped stdin; in the chat screen, type the image's path or use /image.");
        const images = await Promise.all(flags.image.map((f) => readImage(f).catch((err: Error) => Promise.reject(new NanoError("INVALID_ARGUMENT", err.message)))));
        const own = flags.functions ? await loadFunctions(flags.functions) : undefined;
        client.functionHandler = own?.handler;
        const request: Partial<CreateSessionRequest> = {
          model: flags.model ?? "",
          chatTemplate: flags.chatTemplate ?? "",
          systemPrompt: flags.systemPrompt,
          defaults: params,
          builtinFunctions: flags.builtins ?? [],
          clientFunctions: own?.decls ?? [],
        };
        const session = flags.session ? await continueSession(client, flags, request) : await client.createSession(request);
        if (prompts) await runPrompts(client, session, prompts, params, flags.json === true, images);
        else {
          // Ink draws only the last frame when CI or CONTINUOUS_INTEGRATION is set (it reads them
          // once, on import); a chat in a terminal must redraw live whatever the environment says.
          delete process.env.CI;
          delete process.env.CONTINUOUS_INTEGRATION;
          const { runTui } = await import("../ui/runTui.js");
          // The flags are the session's defaults already; /set adds per-turn overrides on top.
          await runTui(client, session, {}, request);
        }
      } finally {
        client.close();
      }
    });
}

/** An existing session, with this run's functions declared on it when any are given. */
async function continueSession(client: NanoClient, flags: ChatFlags, request: Partial<CreateSessionRequest>): Promise<SessionInfo> {
  const id = flags.session!;
  if (flags.functions || flags.builtins) {
    await client.updateSession(id, { setFunctions: true, builtinFunctions: request.builtinFunctions, clientFunctions: request.clientFunctions });
  }
  return client.getSession(id, true);
}

/** Non-interactive: reply text (or, with --json, every event as NDJSON) alone on stdout, the rest on stderr. */
async function runPrompts(client: NanoClient, session: SessionInfo, prompts: string[], params: GenerationParams, json: boolean, images: Attachment[]): Promise<void> {
  process.stderr.write(`session ${session.sessionId} · model ${session.model} · template ${session.chatTemplate} (${session.templateReason})\n`);
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  for (const a of images) process.stderr.write(`[image ${describeImage(a)}]\n`);
  for (const [i, prompt] of prompts.entries()) {
    for await (const event of client.turn(session.sessionId, prompt, params, abort.signal, undefined, i === 0 ? images : [])) {
      if (json) {
        process.stdout.write(JSON.stringify(ChatEvent.toJSON(event)) + "\n");
        continue;
      }
      const kind = event.kind;
      if (kind?.$case === "text") process.stdout.write(kind.text.text);
      else if (kind?.$case === "end") {
        process.stdout.write("\n");
        process.stderr.write(`[${statsLine(kind.end.stats, kind.end.stopReason)}]\n`);
      }
    }
    if (abort.signal.aborted) break;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
}
