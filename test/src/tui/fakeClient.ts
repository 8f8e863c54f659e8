import { NanoError, FunctionCall, LocalModel, Message, Role, SessionInfo, StopReason, TemplateInfo, TurnStats, type ChatEvent, type CreateSessionRequest, type GenerationParams, type ListLocalModelsResponse } from "@nanollm/shared";
import type { ChatClient } from "nanollm/dist/ui/ChatClient.js";

/** What one scripted turn yields: text deltas, function calls, then (unless cancelled) its end. */
export type Step = { text: string } | { call: string; args: string } | { result: string };

/**
 * A ChatClient with a scripted daemon behind it: replies come from `reply(text)`, the history is
 * kept like the daemon keeps it, and every call is recorded. `slow` streams until cancelled.
 */
export class FakeClient implements ChatClient {
  readonly host = "fake:7433";
  readonly calls: string[] = [];
  readonly turns: { text: string; params: GenerationParams | undefined; images: { name: string; data: Uint8Array; offset?: number }[] }[] = [];
  history: Message[] = [];
  slow = false;
  /** Other sessions the daemon has (listed, not chatted with). */
  others: SessionInfo[] = [];
  /** The daemon's templates, as ListTemplates answers. */
  templates = ["chat-ml", "llama-3", "llama-3.1", "llama-3.1-tools", "phi-3", "raw"];
  session: SessionInfo = SessionInfo.fromPartial({ sessionId: "5e55104a-0000-4000-8000-000000000001", model: "tiny", chatTemplate: "chat-ml", templateReason: "requested", contextSize: 1024, contextUsed: 12, templateHasSystem: true, updatedAtMs: Date.now() });

  constructor(private readonly reply: (text: string) => Step[] = (t) => [{ text: `echo: ${t}` }]) {}

  private info(withHistory = false): SessionInfo {
    const users = this.history.filter((m) => m.role === Role.ROLE_USER);
    return {
      ...this.session,
      messageCount: this.history.length,
      contextUsed: 12 + this.history.length * 10,
      title: users[0]?.text.split("\n")[0] ?? "",
      lastUserText: users.at(-1)?.text ?? "",
      history: withHistory ? [...this.history] : [],
    };
  }

  async *turn(sessionId: string, text: string, params?: GenerationParams, signal?: AbortSignal, _onCall?: unknown, images: { name: string; data: Uint8Array; offset?: number }[] = []): AsyncGenerator<ChatEvent> {
    this.turns.push({ text, params, images });
    const base = { turnId: `t${this.turns.length}`, sessionId };
    let reply = "";
    let tokens = 0;
    let stop = StopReason.STOP_REASON_EOS;
    const steps = this.reply(text);
    for (let i = 0; this.slow || i < steps.length; i++) {
      if (signal?.aborted) {
        stop = StopReason.STOP_REASON_CANCELLED;
        break;
      }
      await new Promise((r) => setTimeout(r, this.slow ? 5 : 0));
      const step = steps[i % steps.length]!;
      if ("call" in step) yield { ...base, kind: { $case: "functionCall", functionCall: FunctionCall.fromPartial({ callId: "c1", name: step.call, argumentsJson: step.args }) } };
      // Written loosely: the function-result event is being added to the proto as this is written.
      else if ("result" in step) yield { ...base, kind: { $case: "functionResult", functionResult: { callId: "c1", result: step.result, isError: false } } } as unknown as ChatEvent;
      else {
        reply += step.text;
        tokens++;
        yield { ...base, kind: { $case: "text", text: { text: step.text, tokenIds: [tokens] } } };
      }
    }
    this.history.push(Message.fromPartial({ role: Role.ROLE_USER, text }), Message.fromPartial({ role: Role.ROLE_BOT, text: reply }));
    const stats = TurnStats.fromPartial({ inputTokens: 20, evaluatedTokens: 20, prefillTokensPerSecond: 812, generatedTokens: tokens, decodeTokensPerSecond: 345.6, decodeMs: 10 });
    yield { ...base, kind: { $case: "end", end: { stopReason: stop, stats, reply, session: this.info() } } };
  }

  /** The CreateSession requests, as sent. */
  readonly creates: Partial<CreateSessionRequest>[] = [];
  async createSession(req: Partial<CreateSessionRequest> = {}): Promise<SessionInfo> {
    this.calls.push("createSession");
    this.creates.push(req);
    // Like the daemon: a given history starts the session (its bot token ids dropped for another model).
    this.history = (req.history ?? []).map((m) => Message.fromPartial({ role: m.role, text: m.text }));
    this.session = { ...this.session, sessionId: "0e770000-0000-4000-8000-000000000002", model: req.model || this.session.model };
    return this.info();
  }
  /** The daemon's models folder, as ListLocalModels answers. */
  models = ["tiny", "other"];
  async listLocalModels(): Promise<ListLocalModelsResponse> {
    return { models: this.models.map((name) => LocalModel.fromPartial({ name, architecture: "llama", quantization: "Q8_0" })), memoryBudgetBytes: 0, memoryUsedBytes: 0, modelsDir: "/models" };
  }
  /** GetSession calls with the history (what /undo, /retry and each turn's end should not need). */
  historyFetches = 0;
  /** GetSession calls of any kind. */
  sessionFetches = 0;
  async getSession(id: string, withHistory = false): Promise<SessionInfo> {
    this.sessionFetches++;
    if (withHistory) this.historyFetches++;
    // Like the daemon: the id, or the start of it.
    if (!this.session.sessionId.startsWith(id)) throw new NanoError("NOT_FOUND", `There is no session "${id}"; list sessions with \`nanollm sessions\` or create one.`);
    return this.info(withHistory);
  }
  async listSessions(): Promise<SessionInfo[]> {
    return [this.info(), ...this.others];
  }
  async resetSession(): Promise<SessionInfo> {
    this.calls.push("resetSession");
    this.history = [];
    return this.info();
  }
  async updateSession(_id: string, change: { systemPrompt?: string; chatTemplate?: string }): Promise<SessionInfo> {
    this.calls.push(`updateSession ${JSON.stringify(change)}`);
    if (change.systemPrompt !== undefined) this.session = { ...this.session, systemPrompt: change.systemPrompt };
    if (change.chatTemplate !== undefined) this.session = { ...this.session, chatTemplate: change.chatTemplate, templateReason: "requested" };
    return this.info();
  }
  async truncateSession(_id: string, keep: number | "last exchange"): Promise<SessionInfo> {
    this.calls.push(`truncateSession ${keep}`);
    this.history = this.history.slice(0, keep === "last exchange" ? this.history.findLastIndex((m) => m.role === Role.ROLE_USER) : keep);
    return this.info();
  }
  async deleteSession(id: string): Promise<void> {
    this.calls.push(`deleteSession ${id}`);
  }
  async listTemplates(): Promise<TemplateInfo[]> {
    return this.templates.map((name) => TemplateInfo.fromPartial({ name, hasSystem: true }));
  }
}
