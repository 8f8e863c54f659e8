import { credentials, Metadata, status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  ChatServiceClient,
  ModelServiceClient,
  NanoError,
  SessionServiceClient,
  type ChatEvent,
  type ChatRequest,
  type CreateSessionRequest,
  type GenerationParams,
  type ModelInfo,
  type ServerInfo,
  type SessionInfo,
} from "@nanollm/shared";
import { toClientError } from "./errors.js";

type Callback<T> = (err: ServiceError | null, res: T) => void;

/** The gRPC client: promises for unary calls, an async iterable of events for a chat turn. */
export class NanoClient {
  private readonly sessions: SessionServiceClient;
  private readonly models: ModelServiceClient;
  private readonly chat: ChatServiceClient;

  constructor(readonly host: string) {
    const creds = credentials.createInsecure();
    const options = { "grpc.max_receive_message_length": 16 * 1024 * 1024 };
    this.sessions = new SessionServiceClient(host, creds, options);
    this.models = new ModelServiceClient(host, creds, options);
    this.chat = new ChatServiceClient(host, creds, options);
  }

  createSession(req: Partial<CreateSessionRequest>): Promise<SessionInfo> {
    const full: CreateSessionRequest = { model: "", chatTemplate: "", history: [], defaults: undefined, systemPrompt: undefined, overflow: 0, ...req };
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.createSession(full, this.meta(), this.opts(), cb));
  }

  getSession(sessionId: string, withHistory = false): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.getSession({ sessionId, withHistory }, this.meta(), this.opts(), cb));
  }

  async listSessions(): Promise<SessionInfo[]> {
    return (await this.unary((cb: Callback<{ sessions: SessionInfo[] }>) => this.sessions.listSessions({}, this.meta(), this.opts(), cb))).sessions;
  }

  resetSession(sessionId: string): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.resetSession({ sessionId }, this.meta(), this.opts(), cb));
  }

  updateSession(sessionId: string, change: { systemPrompt?: string; chatTemplate?: string; defaults?: GenerationParams }): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.updateSession({ sessionId, defaults: undefined, ...change }, this.meta(), this.opts(), cb));
  }

  /** Keeps the first `keepMessages` messages of the history. */
  truncateSession(sessionId: string, keepMessages: number): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.truncateSession({ sessionId, keepMessages }, this.meta(), this.opts(), cb));
  }

  async deleteSession(sessionId: string): Promise<void> {
    await this.unary((cb: Callback<object>) => this.sessions.deleteSession({ sessionId }, this.meta(), this.opts(), cb));
  }

  async listModels(): Promise<ModelInfo[]> {
    return (await this.unary((cb: Callback<{ models: ModelInfo[] }>) => this.models.listModels({}, this.meta(), this.opts(), cb))).models;
  }

  serverInfo(): Promise<ServerInfo> {
    return this.unary((cb: Callback<ServerInfo>) => this.models.getServerInfo({}, this.meta(), this.opts(), cb));
  }

  /**
   * Runs one turn and yields its events until the turn ends. Aborting `signal` asks the daemon to
   * stop the reply; the turn then still ends with its stats and the CANCELLED stop reason.
   */
  async *turn(sessionId: string, text: string, params?: GenerationParams, signal?: AbortSignal): AsyncGenerator<ChatEvent> {
    const turnId = `t-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const call: ClientDuplexStream<ChatRequest, ChatEvent> = this.chat.chat();
    const onAbort = () => call.write({ kind: { $case: "cancel", cancel: { turnId } } });
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      call.write({ kind: { $case: "userTurn", userTurn: { sessionId, text, params, turnId } } });
      for await (const event of call as AsyncIterable<ChatEvent>) {
        yield event;
        if (event.kind?.$case === "end") {
          call.end();
          return;
        }
      }
    } catch (err) {
      throw toClientError(err, this.host);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  close(): void {
    this.sessions.close();
    this.models.close();
    this.chat.close();
  }

  private meta(): Metadata {
    return new Metadata();
  }

  private opts() {
    return { deadline: Date.now() + 120_000 };
  }

  private unary<T>(fn: (cb: Callback<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => fn((err, res) => (err ? reject(toClientError(err, this.host)) : resolve(res))));
  }
}

export { status as grpcStatus, NanoError };
