import { fail, type GenerationParams } from "@nanollm/shared";
import type { StoredImage } from "../engine/Images.js";
import { UNSHARED, type Held, type ImageBytes } from "./Journal.js";
import type { ModelHost } from "../engine/ModelHost.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import { render, type RenderMessage, type Role } from "../templates/render.js";
import { TextTokens } from "./TextTokens.js";
import { SessionFeed, type FeedLimits } from "./SessionFeed.js";
import { TurnQueue } from "./TurnQueue.js";

/** A message as the history keeps it: bot replies hold the exact ids that were sampled. */
export interface HistoryMessage {
  role: Role;
  text: string;
  tokens: number[];
  /** Images a user message carries, stored by hash (ImageStore). */
  images?: StoredImage[];
}

export type OverflowPolicy = "wrap" | "error";

/** The owner of sessions created without an identity (and of records from before identities). */
export const LOCAL_OWNER = "local";

export interface RunningTurn {
  turnId: string;
  /** Waiting in the model's queue for a free KV-cache sequence. */
  waiting?: boolean;
}

/** The feed limits of a session the store did not set (NANOLLM_REPLAY_EVENTS, NANOLLM_WATCH_BEHIND_EVENTS). */
export const DEFAULT_FEED_LIMITS: FeedLimits = { replay: 256, behind: 128 };

/** Whoever asks for a session: an owner sees their own, an admin every one. */
export interface Caller {
  name: string;
  admin: boolean;
}

/** One chat: its model, template, settings and history. The KV cache lives in the model's pool. */
export class Session {
  history: HistoryMessage[] = [];
  running: RunningTurn | undefined;
  /** Turns waiting for the running one (one writer at a time). */
  readonly queue: TurnQueue = new TurnQueue(this);
  /** The session's events, numbered, and the clients watching them (Attach). */
  feed: SessionFeed;
  /** Work that brings the KV cache up to date after a turn; the next turn waits for it. */
  cacheSync: Promise<void> = Promise.resolve();
  createdAt = Date.now();
  updatedAt = Date.now();
  /** What to do when the conversation outgrows the context: drop the oldest turns, or refuse. */
  overflow: OverflowPolicy = "wrap";
  /** Index of the first history message still rendered; earlier ones were wrapped out (but kept). */
  windowStart = 0;
  /** Functions the model may call in this session. */
  functions: FunctionSet = FunctionSet.none;
  /** rendered() as last computed, with what it was computed from. */
  private used: { key: unknown[]; tokens: readonly number[] } | undefined;
  /** The identity that created it; others get NOT_FOUND for it (the quota counts per owner). */
  owner = LOCAL_OWNER;
  /** Where the session's images are kept; set by the store. */
  imageStore: ImageBytes | undefined;
  /** Writes the session to the journal; set by the store. */
  persist: () => Promise<void> = async () => {};
  /** The journal's revision this copy is at (a shared journal's other daemons may be ahead). */
  revision = 0;
  /**
   * Makes this daemon the session's only writer until released, and this copy the latest (a
   * shared journal's lease, then a reload if another daemon wrote since); set by the store.
   */
  hold: (signal?: AbortSignal) => Promise<Held> = async () => UNSHARED;
  /** Each message text's token ids, computed once. */
  readonly text: TextTokens;

  constructor(
    readonly id: string,
    readonly host: ModelHost,
    public template: ChatTemplate,
    public templateReason: string,
    public systemPrompt: string,
    public defaults: GenerationParams,
  ) {
    this.text = new TextTokens(host);
    this.feed = new SessionFeed(id, DEFAULT_FEED_LIMITS);
  }

  /** The messages to render: the system prompt (when the template has one) and the history. */
  messages(extra: readonly RenderMessage[] = []): RenderMessage[] {
    const systemText = this.systemText();
    const system: RenderMessage[] = this.template.system !== undefined && systemText ? [{ role: "system", text: systemText }] : [];
    return [...system, ...this.history.slice(this.windowStart), ...extra];
  }

  /** The system message's text with these settings (default: the session's own). */
  systemText({ systemPrompt = this.systemPrompt, functions = this.functions, template = this.template } = {}): string {
    // Enabled functions are documented in the system prompt, as the reference's generate_docs().
    return [systemPrompt, functions.docs(template.tool_call ? "tools" : "inline")].filter(Boolean).join("\n\n");
  }

  /** Token ids of the conversation rendered with `extra` messages after it. */
  tokens(extra: readonly RenderMessage[]): number[] {
    return this.text.ids(render(this.template, this.messages(extra)));
  }

  /** tokens(extra).length without building the list: sums remembered lengths. */
  tokenCount(extra: readonly RenderMessage[]): number {
    return this.text.count(render(this.template, this.messages(extra)));
  }

  /** Tokenizes the texts tokens(extra) needs a piece at a time, yielding to other clients between. */
  prepareText(extra: readonly RenderMessage[] = []): Promise<void> {
    return this.text.prepareAll(render(this.template, this.messages(extra)));
  }

  /**
   * Makes the model know every image the rendered conversation shows (read back from the store
   * after a restart or when the model forgot it), so a prompt evaluation can encode them.
   */
  async loadImages(extra: readonly HistoryMessage[] = []): Promise<void> {
    const images = this.host.images;
    for (const msg of [...this.history.slice(this.windowStart), ...extra]) {
      for (const im of msg.images ?? []) {
        if (images?.knows(im.sha256)) continue;
        if (!images) throw fail.precondition(`This session shows images, and the model ${this.host.facts.name} takes none now; start the daemon with its --mmproj.`);
        if (!this.imageStore) throw fail.internal("The session has no image store.");
        await images.read(await this.imageStore.get(im.sha256));
      }
    }
  }

  /**
   * Token ids of the conversation as it stands. Listing sessions, syncing the cache after a turn and checking an
   * update all ask for it, so it is remembered until what the rendering depends on changes
   * (messages are never edited in place).
   */
  rendered(): readonly number[] {
    const key = [this.template, this.systemPrompt, this.functions, this.windowStart, this.history.length, this.history.at(-1)];
    if (!this.used || key.some((k, i) => k !== this.used!.key[i])) {
      this.text.sweep();
      this.used = { key, tokens: this.tokens([]) };
    }
    return this.used.tokens;
  }

  /** Tokens the conversation takes in the context now. */
  contextUsed(): number {
    return this.rendered().length;
  }

  /** The first line of the first user message, clipped: what `sessions list` calls the session. */
  get title(): string {
    const first = this.history.find((m) => m.role === "user")?.text.trim().split("\n")[0] ?? "";
    return first.length > 60 ? `${first.slice(0, 59)}…` : first;
  }

  /** The last user message (what /retry sends again), or "" when there is none. */
  get lastUserText(): string {
    return this.history.findLast((m) => m.role === "user")?.text ?? "";
  }

  get contextSize(): number {
    return this.host.facts.contextSize;
  }
}
