import { NanoError, StopReason, type ChatEvent, type CreateSessionRequest, type SessionInfo } from "@nanollm/shared";
import { plural, stopReasonText } from "../commands/format.js";
import type { ChatClient } from "./ChatClient.js";
import { newTurnId } from "../client/NanoClient.js";
import type { ChatStore } from "./ChatStore.js";
import { findCommand, parseCommandLine } from "./commands/registry.js";
import { CommandError, type CommandContext, type SlashCommand } from "./commands/types.js";
import { describeImage, MAX_IMAGES, parseImageLine, readImage, withImageMarks, type Attachment } from "../client/attachImages.js";
import type { InputHistory } from "./input/InputHistory.js";
import { ago } from "../commands/sessionList.js";
import { shortId, showConversation } from "./commands/sessions.js";
import type { Action, ChatState } from "./state.js";
import { SessionView, type OwnTurn } from "./SessionView.js";

/** Two Ctrl+C within this window quit. */
const QUIT_WINDOW_MS = 2000;

export interface ControllerOptions {
  client: ChatClient;
  store: ChatStore;
  commands: readonly SlashCommand[];
  history: InputHistory;
  sessionRequest?: Partial<CreateSessionRequest>;
  onQuit: () => void;
}

/** Everything the chat screen does besides drawing: turns, cancel, slash commands, quitting. */
export class ChatController implements CommandContext {
  readonly client: ChatClient;
  readonly commands: readonly SlashCommand[];
  readonly history: InputHistory;
  readonly sessionRequest: Partial<CreateSessionRequest>;
  private readonly store: ChatStore;
  private readonly onQuit: () => void;
  private abort: AbortController | undefined;
  private noticeTimer: NodeJS.Timeout | undefined;
  private lastCtrlC = -Infinity;
  /** Images attached (a line of only image names, or /image) for the next message. */
  private attached: Attachment[] = [];
  /** Sessions this chat created; those still empty when it ends are deleted, not left behind. */
  private readonly created = new Set<string>();
  /** What Tab completes that only the daemon knows: its templates and its session ids. */
  readonly known = { templates: [] as string[], sessionIds: [] as string[] };
  /** The session's events as shown so far (one order for this chat's turns and others'). */
  private readonly shown = new SessionView();
  /** Stops following the session (at the end). */
  private readonly following = new AbortController();

  constructor(opts: ControllerOptions) {
    this.client = opts.client;
    this.store = opts.store;
    this.commands = opts.commands;
    this.history = opts.history;
    this.sessionRequest = opts.sessionRequest ?? {};
    this.onQuit = opts.onQuit;
  }

  /**
   * The screen's first moments: a continued session shows its conversation; a new one mentions
   * the session used last, which /session switch (or `chat --continue`) resumes.
   */
  async start(session: SessionInfo, fresh: boolean): Promise<void> {
    if (fresh) this.created.add(session.sessionId);
    else if (session.history.length > 0) showConversation(this, session);
    const sessions = await this.client.listSessions().catch(() => []);
    this.known.sessionIds = sessions.map((s) => s.sessionId);
    this.known.templates = (await this.client.listTemplates().catch(() => [])).map((t) => t.name);
    const last = sessions.filter((s) => s.sessionId !== session.sessionId && s.messageCount > 0).sort((a, b) => b.updatedAtMs - a.updatedAtMs)[0];
    if (fresh && last) this.info(`last session ${shortId(last.sessionId)} "${last.title}" (${ago(last.updatedAtMs)}): /session switch ${shortId(last.sessionId)} resumes it`);
    void this.follow(session);
  }

  /**
   * Follows the session's events (Attach), so a reply in progress when the chat opened, and turns
   * other clients send, show as they happen; this chat's own turns come through here too once the
   * watch delivers, in the session's one order. Switching sessions follows the new one; a lost
   * connection is tried again after 0.25 s, doubling up to 8 s.
   */
  private async follow(first: SessionInfo): Promise<void> {
    const attach = this.client.attach?.bind(this.client);
    if (!attach) return;
    let start = { id: first.sessionId, after: first.historySeq as number | undefined };
    for (let failures = 0; !this.following.signal.aborted; ) {
      const switched = new AbortController();
      const unsubscribe = this.store.subscribe(() => this.state().session.sessionId !== start.id && switched.abort());
      try {
        this.shown.reset(start.id, start.after);
        for await (const event of attach(start.id, start.after, AbortSignal.any([this.following.signal, switched.signal]))) {
          failures = 0;
          this.shown.watching = true;
          start.after = event.seq ?? start.after;
          this.show(event);
        }
      } catch (err) {
        const code = err instanceof NanoError ? err.code : "INTERNAL";
        // Events no longer kept: go on from now. A lost connection, or a watch that fell behind: again.
        if (code === "OUT_OF_RANGE") start.after = undefined;
        else if (code === "UNAVAILABLE" || code === "RESOURCE_EXHAUSTED") failures++;
        // A daemon without Attach, or a session that is gone: only this chat's turns show, until another session is chosen.
        else await until(AbortSignal.any([this.following.signal, switched.signal]));
      } finally {
        unsubscribe();
        this.shown.watching = false;
      }
      const session = this.state().session;
      if (session.sessionId !== start.id) start = { id: session.sessionId, after: session.historySeq };
      else if (failures > 0) await new Promise((r) => setTimeout(r, Math.min(8000, 125 * 2 ** failures)).unref());
    }
  }

  /**
   * Puts one event of the session on the screen, once, whichever stream brought it (this chat's
   * turn stream, or the watch); a turn another client sent starts with its user message.
   */
  private show(event: ChatEvent, own = false): void {
    if (!this.shown.take(event, own)) return;
    const kind = event.kind;
    if (!kind) return;
    const mine = this.shown.mine(event.turnId);
    // Its failure was said already (the turn stream's error came before the watch's).
    if (mine?.ended) return;
    if (mine && !mine.started) {
      mine.started = true;
      this.dispatch({ type: "user", text: mine.text });
      this.dispatch({ type: "turnStart" });
    }
    switch (kind.$case) {
      case "user":
        if (mine) break;
        this.info(`── a turn from another client${kind.user.sender ? ` (${kind.user.sender})` : ""} ──`);
        this.dispatch({ type: "user", text: kind.user.text });
        this.dispatch({ type: "turnStart" });
        break;
      case "text":
        this.dispatch({ type: "delta", text: kind.text.text, tokens: kind.text.tokenIds.length });
        break;
      case "functionCall":
        this.dispatch({ type: "function", text: `call ${kind.functionCall.name}(${kind.functionCall.argumentsJson})` });
        break;
      case "functionResult":
        this.dispatch({ type: "function", text: `${kind.functionResult.isError ? "error" : "result"}: ${kind.functionResult.result}` });
        break;
      case "wrapped":
        this.info(`the conversation outgrew the context: the oldest ${plural(kind.wrapped.droppedMessages, "message")} (${plural(kind.wrapped.droppedTokens, "token")}) are no longer seen by the model`);
        break;
      case "loading":
        // Said once as the load starts: the model was unloaded while idle.
        if (kind.loading.progress === 0) this.info(`loading ${kind.loading.model} again (it was unloaded while idle)…`);
        break;
      case "end":
        if (mine) mine.ended = true;
        mine?.shown?.();
        if (kind.end.session) this.dispatch({ type: "session", session: kind.end.session });
        this.dispatch({ type: "end", reply: kind.end.reply, stats: kind.end.stats, stop: kind.end.stopReason });
        this.explainStop(kind.end.stopReason, kind.end.stats?.generatedTokens ?? 0);
        break;
      case "error":
        if (mine) mine.ended = true;
        mine?.shown?.();
        this.dispatch({ type: "turnFailed", text: kind.error.message });
        break;
      default:
        kind satisfies never;
    }
  }

  /** Notes a session this chat made (/session new), so it is removed at the end if left empty. */
  createdSession(session: SessionInfo): void {
    this.created.add(session.sessionId);
    this.known.sessionIds = [...new Set([...this.known.sessionIds, session.sessionId])];
  }

  state = (): ChatState => this.store.getState();
  dispatch = (action: Action): void => this.store.dispatch(action);
  info = (text: string): void => this.dispatch({ type: "info", text });

  /** A reply is streaming or a command is running. */
  get busy(): boolean {
    return this.abort !== undefined || this.state().working;
  }

  /** A message from the input line: a slash command, an image path, or a user turn. */
  async submit(message: string): Promise<void> {
    if (message.trim() === "") return;
    if (this.busy) {
      this.notice("a reply is still running: press Esc to stop it first");
      return;
    }
    this.history.add(message);
    const parsed = parseCommandLine(message);
    if (parsed) return this.runCommand(message, parsed.name, parsed.args);
    // Image files and URLs anywhere in the line go with it, read here (the daemon never opens a
    // path); a line of images alone waits for the question.
    const { text, sources, offsets } = parseImageLine(message);
    if (sources.length > 0) {
      // Images typed with text stand where they were typed; a line of images alone goes before the next message.
      if (!(await this.attach(sources, text ? offsets : []))) return;
      if (!text) return this.info(`attached ${this.attached.length === 1 ? "an image" : `${this.attached.length} images`}: type your message`);
      return this.sendTurn(text);
    }
    return this.sendTurn(message);
  }

  /** Reads images for the next message; false (and an error shown, nothing sent) when one cannot be read. */
  async attach(sources: string[], offsets: number[] = []): Promise<boolean> {
    try {
      const read = (await Promise.all(sources.map((s) => readImage(s)))).map((a, i) => ({ ...a, offset: offsets[i] ?? 0 }));
      if (this.attached.length + read.length > MAX_IMAGES) throw new Error(`A message takes at most ${MAX_IMAGES} images; send the rest with the next one.`);
      this.attached.push(...read);
      for (const a of read) this.dispatch({ type: "info", text: `[image ${describeImage(a)}]` });
      return true;
    } catch (err) {
      this.dispatch({ type: "error", text: (err as Error).message });
      return false;
    }
  }

  /**
   * Runs one turn: the reply streams into the live area and ends in the transcript. The daemon
   * already paces text events (one per 16 ms at most), so each goes to the screen as it comes;
   * the end event carries the session as the turn left it.
   */
  async sendTurn(text: string): Promise<void> {
    const { session, params } = this.state();
    const abort = new AbortController();
    this.abort = abort;
    const images = this.attached;
    this.attached = [];
    const turnId = newTurnId();
    // The message shows when the turn starts: after the one running now, when another client's is;
    // images typed inside it show where they stand (those before it were shown as they were read).
    const mine = this.shown.send(turnId, withImageMarks(text, images));
    if (this.state().live) this.notice("another client's turn is running: yours follows it");
    let end: ChatEvent | undefined;
    try {
      for await (const event of this.client.turn(session.sessionId, text, params, abort.signal, undefined, images, { turnId })) {
        if (event.kind?.$case === "error") throw new NanoError("INTERNAL", event.kind.error.message);
        if (event.kind?.$case === "end") end = event;
        this.show(event, true);
      }
      if (!end) this.failed(mine, "The daemon closed the stream before the reply ended; check that it is still running.");
      else await this.caughtUp(mine, end);
    } catch (err) {
      this.failed(mine, errorText(err));
    } finally {
      this.abort = undefined;
    }
  }

  /**
   * The watch shows this chat's turns in the session's order, so it may still be drawing the reply
   * when the turn stream has ended: the chat stays busy until the screen shows the end (2 s at
   * most; then the turn stream's end is shown, and the watch's copy of it skipped).
   */
  private async caughtUp(mine: OwnTurn, end: ChatEvent): Promise<void> {
    if (mine.ended || !this.shown.watching) return;
    await new Promise<void>((resolve) => {
      mine.shown = resolve;
      setTimeout(resolve, 2000).unref();
    });
    if (mine.ended) return;
    this.shown.watching = false;
    this.show(end, true);
  }

  /** This chat's turn failed: said once, after its message (the watch may have shown the error already). */
  private failed(mine: OwnTurn, text: string): void {
    if (mine.ended) return;
    mine.ended = true;
    if (!mine.started) this.dispatch({ type: "user", text: mine.text });
    this.dispatch({ type: "turnFailed", text });
  }

  /** Stops the reply in progress (Esc); false when there is none. */
  cancel(): boolean {
    if (!this.abort || this.abort.signal.aborted) return this.abort !== undefined;
    this.abort.abort();
    return true;
  }

  /** Ctrl+C: stops a running reply; a second one within 2 s quits. */
  ctrlC(now = Date.now()): void {
    const again = now - this.lastCtrlC < QUIT_WINDOW_MS;
    this.lastCtrlC = now;
    if (again) return this.quit();
    this.notice(this.cancel() ? "stopping the reply · press Ctrl+C again to quit" : "press Ctrl+C again to quit", QUIT_WINDOW_MS);
  }

  quit(): void {
    this.abort?.abort();
    this.clearTimers();
    this.onQuit();
  }

  async refreshSession(): Promise<SessionInfo> {
    const session = await this.client.getSession(this.state().session.sessionId);
    this.dispatch({ type: "session", session });
    return session;
  }

  /** A hint under the input line that goes away by itself after `ms`. */
  notice(text: string, ms = 4000): void {
    this.dispatch({ type: "notice", text });
    if (this.noticeTimer) clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => this.state().notice === text && this.dispatch({ type: "notice", text: undefined }), ms);
    this.noticeTimer.unref();
  }

  /** Stops what runs and deletes the sessions this chat made and never used (quitting waits 2 s at most). */
  async dispose(): Promise<void> {
    this.abort?.abort();
    this.following.abort();
    this.clearTimers();
    const removeUnused = async () => {
      for (const id of this.created) {
        const s = await this.client.getSession(id).catch(() => undefined);
        if (s && s.messageCount === 0) await this.client.deleteSession(id).catch(() => undefined);
      }
    };
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([removeUnused(), new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }

  private async runCommand(line: string, name: string, args: string): Promise<void> {
    const command = findCommand(this.commands, name);
    this.dispatch({ type: "user", text: line });
    if (!command) {
      this.dispatch({ type: "error", text: `There is no command /${name}; type /help for the list.` });
      return;
    }
    this.dispatch({ type: "working", working: true });
    try {
      await command.run(args, this);
    } catch (err) {
      this.dispatch({ type: "error", text: errorText(err) });
    } finally {
      this.dispatch({ type: "working", working: false });
    }
  }

  private explainStop(stop: StopReason, tokens: number): void {
    if (stop === StopReason.STOP_REASON_CANCELLED) this.info(`reply stopped (${stopReasonText(stop)}) after ${plural(tokens, "token")}`);
    else if (stop === StopReason.STOP_REASON_MAX_TOKENS) this.info(`reply cut at ${plural(tokens, "token")} (max new tokens); /set max_new_tokens N allows longer replies`);
    else if (stop === StopReason.STOP_REASON_CONTEXT_FULL) this.info("reply cut: the session's context is full; /undo, /reset or /session new make room");
  }

  private clearTimers(): void {
    if (this.noticeTimer) clearTimeout(this.noticeTimer);
    this.noticeTimer = undefined;
  }
}

/** One sentence for the transcript; a bug keeps its message too rather than vanishing. */
export function errorText(err: unknown): string {
  if (err instanceof NanoError || err instanceof CommandError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/** Resolves once `signal` is aborted (at once when it is already). */
function until(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
}
