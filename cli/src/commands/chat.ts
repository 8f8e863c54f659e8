import { Command } from "commander";
import { ChatEvent, NanoError, type CreateSessionRequest, type GenerationParams, type SessionInfo } from "@nanollm/shared";
import { describeImage, readImage, type Attachment } from "../client/attachImages.js";
import type { NanoClient } from "../client/NanoClient.js";
import { connect, connectionOptions, type ConnectionFlags } from "./connection.js";
import { templateFields, textOrAtFile } from "../files/userFiles.js";
import { statsLine } from "./format.js";
import { loadFunctions } from "./loadFunctions.js";
import { paramsFromFlags, settingArg, type SamplingFlags } from "./options.js";
import { latestSession } from "./sessionList.js";
import { watchSession } from "./watch.js";

interface ChatFlags extends SamplingFlags, ConnectionFlags {
  model?: string;
  chatTemplate?: string;
  systemPrompt?: string;
  prompt: string[];
  json?: boolean;
  session?: string;
  continue?: boolean;
  keep?: boolean;
  functions?: string;
  builtins?: string[];
  image: string[];
  watch?: boolean;
  /** false with --no-wait. */
  wait: boolean;
}

/** The exit status of a run stopped by Ctrl+C, as shells expect (128 + SIGINT). */
const INTERRUPTED = 130;

export function chatCommand(): Command {
  return connectionOptions(new Command("chat").description("chat with the daemon: an interactive TUI, or one turn per --prompt (or piped stdin)"))
    .option("-m, --model <name|path>", "model for the session: a name from `nanollm models` (loaded if it is not), or a .gguf path on the daemon's host (default: the daemon's)")
    .option("--chat-template <name|file.json>", "chat template name, or a JSON file (read here and sent)")
    .option("--system-prompt <text|@file>", "system prompt, or @FILE for a file's text")
    .option("--prompt <text|@file>", "a user turn, or @FILE for a file's text (repeat for several); runs without the TUI", (v: string, acc: string[]) => [...acc, v], [])
    .option("--max-new-tokens <n>", "most tokens a reply may have", settingArg("max_new_tokens"))
    .option("--min-new-tokens <n>", "fewest tokens a reply has before it may end", settingArg("min_new_tokens"))
    .option("--do-sample", "sample instead of greedy decoding (--temperature, --top-p and --top-k imply it)")
    .option("--temperature <t>", "sampling temperature (implies --do-sample)", settingArg("temperature"))
    .option("--top-p <p>", "nucleus sampling mass (implies --do-sample)", settingArg("top_p"))
    .option("--top-k <k>", "sample from the k most likely tokens (implies --do-sample)", settingArg("top_k"))
    .option("--repetition-penalty <r>", "penalty for repeated tokens (1 = off)", settingArg("repetition_penalty"))
    .option("--seed <n>", "random seed for sampling", settingArg("seed"))
    .option("--grammar <gbnf|@file>", "a GBNF grammar every reply must follow (structured output), or @FILE")
    .option("--image <file|url>", "an image for the first --prompt (repeat for several; the model must take images)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--json", "without the TUI: print the chat events as NDJSON (one JSON object per line)")
    .option("--session <id>", "continue an existing session (its id, or the start of it; see `nanollm sessions`)")
    .option("-c, --continue", "continue the most recently used session")
    .option("--watch", "with --session or --continue: print the session's events as they come (a reply in progress from its start, then every turn, whoever sends it) until Ctrl+C")
    .option("--no-wait", "with --prompt or stdin: fail at once when another turn runs on the session, instead of waiting for it")
    .option("--keep", "with --prompt or stdin: keep the new session on the daemon afterwards (it is deleted otherwise)")
    .option("--functions <module.mjs>", "offer the model the upper-case functions this ES module exports (they run here)")
    .option("--builtins <names>", "enable the daemon's built-in functions, e.g. DATE,TIME", (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean))
    .action(async (flags: ChatFlags) => {
      const client = await connect(flags);
      try {
        if (flags.session && flags.continue) throw new NanoError("INVALID_ARGUMENT", "--session and --continue both pick a session; give one of them.");
        const params = paramsFromFlags({ ...flags, grammar: flags.grammar === undefined ? undefined : textOrAtFile(flags.grammar, "grammar") });
        if (flags.watch && !(flags.session || flags.continue)) throw new NanoError("INVALID_ARGUMENT", "--watch follows an existing session: give --session ID or --continue.");
        if (flags.watch && flags.prompt.length > 0) throw new NanoError("INVALID_ARGUMENT", "--watch only prints the session's events; send prompts from another `nanollm chat`.");
        const prompts = flags.prompt.length > 0 ? flags.prompt.map((p) => textOrAtFile(p, "prompt")) : process.stdin.isTTY || flags.watch ? undefined : [await readStdin()];
        if (prompts?.some((p) => p.trim() === "")) throw new NanoError("INVALID_ARGUMENT", flags.prompt.length ? "A --prompt is empty; give the text to send." : "Nothing came on stdin; pipe the prompt in, or give it with --prompt.");
        if (flags.json && !prompts && !flags.watch) throw new NanoError("INVALID_ARGUMENT", "--json runs without the TUI: give the prompt with --prompt or on stdin.");
        if (flags.image.length > 0 && !prompts) throw new NanoError("INVALID_ARGUMENT", "--image goes with --prompt or piped stdin; in the chat screen, type the image's path or use /image.");
        const images = await Promise.all(flags.image.map((f) => readImage(f).catch((err: Error) => Promise.reject(new NanoError("INVALID_ARGUMENT", err.message)))));
        const own = flags.functions ? await loadFunctions(flags.functions) : undefined;
        client.functionHandler = own?.handler;
        const request: Partial<CreateSessionRequest> = {
          model: flags.model ?? "",
          ...(flags.chatTemplate ? templateFields(flags.chatTemplate) : {}),
          systemPrompt: flags.systemPrompt === undefined ? undefined : textOrAtFile(flags.systemPrompt, "system prompt"),
          defaults: params,
          builtinFunctions: flags.builtins ?? [],
          clientFunctions: own?.decls ?? [],
        };
        const existing = flags.continue ? ((await latestSession(client)) ?? noSession()) : flags.session;
        const session = existing ? await continueSession(client, existing, flags, request) : await client.createSession(request);
        warnUnshown(session, request);
        if (flags.watch) {
          await watchSession(client, session, flags.json === true);
        } else if (prompts) {
          // A one-shot run's own session is gone afterwards unless asked to keep it.
          const temporary = !existing && !flags.keep;
          try {
            await runPrompts(client, session, prompts, params, { json: flags.json === true, temporary, noWait: !flags.wait }, images);
          } finally {
            if (temporary) await client.deleteSession(session.sessionId).catch(() => undefined);
          }
        } else {
          // Ink draws only the last frame when CI or CONTINUOUS_INTEGRATION is set (it reads them
          // once, on import); a chat in a terminal must redraw live whatever the environment says.
          delete process.env.CI;
          delete process.env.CONTINUOUS_INTEGRATION;
          const { runTui } = await import("../ui/runTui.js");
          // The flags are the session's defaults already; /set adds per-turn overrides on top.
          await runTui(client, session, {}, request, existing === undefined);
        }
      } finally {
        client.close();
      }
    });
}

function noSession(): never {
  throw new NanoError("NOT_FOUND", "There is no session to continue; start one with `nanollm chat`.");
}

/** An existing session with its history, with this run's functions declared on it when any are given. */
async function continueSession(client: NanoClient, id: string, flags: ChatFlags, request: Partial<CreateSessionRequest>): Promise<SessionInfo> {
  if (flags.functions || flags.builtins) {
    await client.updateSession(id, { setFunctions: true, builtinFunctions: request.builtinFunctions, clientFunctions: request.clientFunctions });
  }
  return client.getSession(id, true);
}

/** Settings that would do nothing on this session's template are said so, not silently dropped. */
function warnUnshown(session: SessionInfo, request: Partial<CreateSessionRequest>): void {
  if (session.templateHasSystem) return;
  if (request.systemPrompt) process.stderr.write(`nanollm: template ${session.chatTemplate} has no system role, so the model will not see the system prompt; pick another with --chat-template.\n`);
  if (session.functions.length > 0) process.stderr.write(`nanollm: template ${session.chatTemplate} has no system role to document functions in, so the model does not know them; pick another with --chat-template.\n`);
}

/** Non-interactive: reply text (or, with --json, every event as NDJSON) alone on stdout, the rest on stderr. */
async function runPrompts(client: NanoClient, session: SessionInfo, prompts: string[], params: GenerationParams, how: { json: boolean; temporary: boolean; noWait: boolean }, images: Attachment[]): Promise<void> {
  const { json, temporary } = how;
  process.stderr.write(`session ${session.sessionId}${temporary ? " (deleted at the end; --keep keeps it)" : ""} · model ${session.model} · template ${session.chatTemplate} (${session.templateReason})\n`);
  if (session.busy && !how.noWait) process.stderr.write("another turn is running on this session: this one waits for it (`chat --session ID --watch` shows it)\n");
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  for (const a of images) process.stderr.write(`[image ${describeImage(a)}]\n`);
  try {
    for (const [i, prompt] of prompts.entries()) {
      for await (const event of client.turn(session.sessionId, prompt, params, abort.signal, undefined, i === 0 ? images : [], { noWait: how.noWait })) {
        if (json) {
          process.stdout.write(JSON.stringify(ChatEvent.toJSON(event)) + "\n");
          continue;
        }
        const kind = event.kind;
        if (kind?.$case === "text") process.stdout.write(kind.text.text);
        else if (kind?.$case === "loading" && kind.loading.progress === 0) process.stderr.write(`[loading ${kind.loading.model} again: it was unloaded while idle]\n`);
        else if (kind?.$case === "end") {
          process.stdout.write("\n");
          process.stderr.write(`[${statsLine(kind.end.stats, kind.end.stopReason)}]\n`);
        }
      }
      if (abort.signal.aborted) break;
    }
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (abort.signal.aborted) process.exitCode = INTERRUPTED;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").replace(/\n$/, "");
}
