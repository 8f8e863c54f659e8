import { FunctionCall, Message, Role, SessionInfo, StopReason, TurnStats, type ChatEvent, type GenerationParams } from "@nanollm/shared";
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
  readonly turns: { text: string; params: GenerationParams | undefined; images: { name: string; data: Uint8Array }[] }[] = [];
  history: Message[] = [];
  slow = false;
  session: SessionInfo = SessionInfo.fromPartial({ sessionId: "5e55104a-0000-4000-8000-000000000001", model: "tiny", chatTemplate: "chat-ml", templateReason: "requested", contextSize: 1024, contextUsed: 12 });

  constructor(private readonly reply: (text: string) => Step[] = (t) => [{ text: `echo: ${t}` }]) {}

  private info(withHistory = false): SessionInfo {
    return { ...this.session, messageCount: this.history.length, contextUsed: 12 + this.history.length * 10, history: withHistory ? [...this.history] : [] };
  }

  async *turn(sessionId: string, text: string, params?: GenerationParams, signal?: AbortSignal, _onCall?: unknown, images: { name: string; data: Uint8Array }[] = []): AsyncGenerator<ChatEvent> {
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
    yield { ...base, kind: { $case: "end", end: { stopReason: stop, stats, reply } } };
  }

  async createSession(): Promise<SessionInfo> {
    this.calls.push("createSession");
    this.history = [];
    this.session = { ...this.session, sessionId: "0e770000-0000-4000-8000-000000000002" };
    return this.info();
  }
  async getSession(_id: string, withHistory = false): Promise<SessionInfo> {
    return this.info(withHistory);
  }
  async listSessions(): Promise<SessionInfo[]> {
    return [this.info()];
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
  async truncateSession(_id: string, keep: number): Promise<SessionInfo> {
    this.calls.push(`truncateSession ${keep}`);
    this.history = this.history.slice(0, keep);
    return this.info();
  }
}
