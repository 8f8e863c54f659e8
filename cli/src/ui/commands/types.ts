import type { CreateSessionRequest, SessionInfo } from "@nanollm/shared";
import type { ChatClient } from "../ChatClient.js";
import type { Action, ChatState } from "../state.js";

/** What a slash command may do: talk to the daemon, change the chat state, start a turn. */
export interface CommandContext {
  readonly client: ChatClient;
  readonly commands: readonly SlashCommand[];
  /** How `nanollm chat` created its session; /session new makes another like it. */
  readonly sessionRequest: Partial<CreateSessionRequest>;
  state(): ChatState;
  dispatch(action: Action): void;
  info(text: string): void;
  sendTurn(text: string): Promise<void>;
  /** Reads images (files or URLs) for the next message; false when one could not be read (shown). */
  attach(sources: string[]): Promise<boolean>;
  /** Re-reads the current session from the daemon (context used, message count). */
  refreshSession(): Promise<SessionInfo>;
  /** Notes a session the command created (an empty one is deleted when the chat ends). */
  createdSession(session: SessionInfo): void;
  /** Daemon-side names Tab completes: templates and session ids, read when the chat starts. */
  readonly known: { templates: readonly string[]; sessionIds: readonly string[] };
  quit(): void;
}

/** What completion reads: the commands, and the names only the daemon knows. */
export type CompletionContext = Pick<CommandContext, "commands" | "known">;

/** A slash command as data: /help and tab completion are generated from these. */
export interface SlashCommand {
  name: string;
  aliases?: readonly string[];
  /** The arguments, as shown by /help (e.g. "new|list|switch ID"). */
  usage?: string;
  help: string;
  /** Candidates for the argument being typed (tab completion). */
  complete?: (argPrefix: string, ctx: CompletionContext) => readonly string[];
  run(args: string, ctx: CommandContext): Promise<void> | void;
}

/** A user mistake in a command: shown as one sentence, never as a stack trace. */
export class CommandError extends Error {}
