import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { Channel, credentials, Metadata, status, type ChannelCredentials, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import {
  ChatServiceClient,
  ModelServiceClient,
  NanoError,
  SessionServiceClient,
  type ChatEvent,
  type ChatRequest,
  type CreateSessionRequest,
  type FunctionCall,
  type FunctionDecl,
  type GenerationParams,
  type ModelInfo,
  type ServerInfo,
  type SessionInfo,
  type TemplateInfo,
} from "@nanollm/shared";
import { FROM_STATUS, toClientError } from "./errors.js";

/** The metadata (and HTTP header) naming a call's session, which balancers hash on. */
export const SESSION_HEADER = "x-nanollm-session";

type Callback<T> = (err: ServiceError | null, res: T) => void;

/**
 * A call that no daemon answered (UNAVAILABLE before any response: a balancer's 502 or 503 while it
 * takes a daemon that just died out of its pool) is sent again, twice at most; one that a daemon
 * answered never is, so a turn never runs twice. Chat and the calls that only read.
 */
const RETRIES = {
  methodConfig: [
    {
      name: [
        { service: "nanollm.v1.ChatService", method: "Chat" },
        { service: "nanollm.v1.SessionService", method: "GetSession" },
        { service: "nanollm.v1.SessionService", method: "ListSessions" },
        { service: "nanollm.v1.ModelService", method: "ListModels" },
        { service: "nanollm.v1.ModelService", method: "GetServerInfo" },
        { service: "nanollm.v1.ModelService", method: "ListTemplates" },
      ],
      retryPolicy: { maxAttempts: 3, initialBackoff: "0.05s", maxBackoff: "0.5s", backoffMultiplier: 3, retryableStatusCodes: ["UNAVAILABLE"] },
    },
  ],
};

/** How to reach a daemon beyond its address: TLS files and the bearer token. */
export interface Connection {
  /** PEM CA that signed the daemon's certificate; set means TLS. */
  tlsCa?: string;
  /** PEM client certificate and key, for a daemon that asks for one (mutual TLS). */
  tlsCert?: string;
  tlsKey?: string;
  /** Sent as `authorization: Bearer TOKEN` on every call. */
  token?: string;
}

/** Runs one of this client's declared functions for the model. */
export type FunctionHandler = (call: FunctionCall) => Promise<{ result: string; isError: boolean }>;

/** The gRPC client: promises for unary calls, an async iterable of events for a chat turn. */
export class NanoClient {
  private readonly sessions: SessionServiceClient;
  private readonly models: ModelServiceClient;
  private readonly chat: ChatServiceClient;
  /** Answers calls of this client's functions when a turn is given no handler of its own. */
  functionHandler: FunctionHandler | undefined;

  constructor(
    readonly host: string,
    private readonly connection: Connection = {},
  ) {
    const creds = channelCredentials(connection);
    const options = {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
      // A chat left open over Wi-Fi notices a dead link in ~40 s instead of hanging.
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      "grpc.keepalive_permit_without_calls": 1,
      "grpc.service_config": JSON.stringify(RETRIES),
    };
    // One connection per client, its own (not pooled with other clients in this process): a
    // balancer sees each client as the separate peer it is, and close() ends it.
    const channel = new Channel(host, creds, { ...options, "grpc.use_local_subchannel_pool": 1 });
    this.sessions = new SessionServiceClient(host, creds, { channelOverride: channel });
    this.models = new ModelServiceClient(host, creds, { channelOverride: channel });
    this.chat = new ChatServiceClient(host, creds, { channelOverride: channel });
  }

  /** The client picks the new session's id (a UUID unless given), so a balancer sends the creation where its turns will go. */
  createSession(req: Partial<CreateSessionRequest>): Promise<SessionInfo> {
    const full: CreateSessionRequest = { model: "", chatTemplate: "", chatTemplateJson: "", history: [], defaults: undefined, systemPrompt: undefined, overflow: 0, builtinFunctions: [], clientFunctions: [], ...req, sessionId: req.sessionId || randomUUID() };
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.createSession(full, this.meta(full.sessionId), this.opts(), cb));
  }

  getSession(sessionId: string, withHistory = false): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.getSession({ sessionId, withHistory }, this.meta(sessionId), this.opts(), cb));
  }

  async listSessions(): Promise<SessionInfo[]> {
    return (await this.unary((cb: Callback<{ sessions: SessionInfo[] }>) => this.sessions.listSessions({}, this.meta(), this.opts(), cb))).sessions;
  }

  resetSession(sessionId: string): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.resetSession({ sessionId }, this.meta(sessionId), this.opts(), cb));
  }

  updateSession(
    sessionId: string,
    change: { systemPrompt?: string; chatTemplate?: string; chatTemplateJson?: string; defaults?: GenerationParams; setFunctions?: boolean; builtinFunctions?: string[]; clientFunctions?: FunctionDecl[] },
  ): Promise<SessionInfo> {
    return this.unary((cb: Callback<SessionInfo>) =>
      this.sessions.updateSession({ sessionId, defaults: undefined, setFunctions: false, builtinFunctions: [], clientFunctions: [], ...change }, this.meta(sessionId), this.opts(), cb),
    );
  }

  /** Keeps the first `keep` messages of the history, or those before the last user message. */
  truncateSession(sessionId: string, keep: number | "last exchange"): Promise<SessionInfo> {
    const req = keep === "last exchange" ? { sessionId, keepMessages: 0, dropLastExchange: true } : { sessionId, keepMessages: keep, dropLastExchange: false };
    return this.unary((cb: Callback<SessionInfo>) => this.sessions.truncateSession(req, this.meta(sessionId), this.opts(), cb));
  }

  async deleteSession(sessionId: string): Promise<void> {
    await this.unary((cb: Callback<object>) => this.sessions.deleteSession({ sessionId }, this.meta(sessionId), this.opts(), cb));
  }

  async listModels(): Promise<ModelInfo[]> {
    return (await this.unary((cb: Callback<{ models: ModelInfo[] }>) => this.models.listModels({}, this.meta(), this.opts(), cb))).models;
  }

  async listTemplates(): Promise<TemplateInfo[]> {
    return (await this.unary((cb: Callback<{ templates: TemplateInfo[] }>) => this.models.listTemplates({}, this.meta(), this.opts(), cb))).templates;
  }

  serverInfo(): Promise<ServerInfo> {
    return this.unary((cb: Callback<ServerInfo>) => this.models.getServerInfo({}, this.meta(), this.opts(), cb));
  }

  /**
   * Runs one turn and yields its events until the turn ends. Aborting `signal` asks the daemon to
   * stop the reply (a CancelTurn on the stream: the one way this client cancels); the turn then
   * still ends with its stats and the CANCELLED stop reason. A turn the daemon refuses or fails
   * throws its one sentence. Calls of this client's own functions go to `onFunctionCall`, whose
   * answer is sent back on the stream.
   */
  async *turn(sessionId: string, text: string, params?: GenerationParams, signal?: AbortSignal, onFunctionCall?: FunctionHandler, images: { data: Uint8Array; name: string }[] = []): AsyncGenerator<ChatEvent> {
    const turnId = `t-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const call: ClientDuplexStream<ChatRequest, ChatEvent> = this.chat.chat(this.meta(sessionId));
    const onAbort = () => !call.writableEnded && call.write({ kind: { $case: "cancel", cancel: { turnId } } });
    signal?.addEventListener("abort", onAbort, { once: true });
    let ended = false;
    try {
      call.write({ kind: { $case: "userTurn", userTurn: { sessionId, text, params, turnId, images: images.map((i) => ({ name: i.name, data: Buffer.from(i.data) })) } } });
      if (signal?.aborted) onAbort();
      for await (const event of call as AsyncIterable<ChatEvent>) {
        const kind = event.kind;
        if (kind?.$case === "error") {
          ended = true;
          call.end();
          throw new NanoError(FROM_STATUS[kind.error.code as status] ?? "INTERNAL", kind.error.message);
        }
        yield event;
        const fc = kind?.$case === "functionCall" ? kind.functionCall : undefined;
        // The function runs beside the stream, so events keep flowing while it works.
        if (fc?.clientSide) void answerCall(fc, onFunctionCall ?? this.functionHandler).then((answer) => !call.writableEnded && call.write({ kind: { $case: "functionResult", functionResult: { callId: fc.callId, ...answer } } }));
        if (kind?.$case === "end") {
          ended = true;
          // Half-close before leaving the loop (leaving it destroys the readable side): the daemon
          // then ends the stream, as the turn is over.
          call.end();
          return;
        }
      }
    } catch (err) {
      throw toClientError(err, this.host);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // A turn left early (the caller stopped reading, or the transport failed) drops its stream;
      // a cancel the user asked for went as a CancelTurn, so its end event with stats still comes.
      if (!ended) call.cancel();
    }
  }

  close(): void {
    this.sessions.close();
    this.models.close();
    this.chat.close();
  }

  /** The token, and for a session-scoped call its id: balancers hash x-nanollm-session so every call of a session reaches one daemon. */
  private meta(sessionId?: string): Metadata {
    const meta = new Metadata();
    if (this.connection.token) meta.set("authorization", `Bearer ${this.connection.token}`);
    if (sessionId) meta.set(SESSION_HEADER, sessionId);
    return meta;
  }

  private opts() {
    return { deadline: Date.now() + 120_000 };
  }

  private unary<T>(fn: (cb: Callback<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => fn((err, res) => (err ? reject(toClientError(err, this.host)) : resolve(res))));
  }
}

/** Plaintext, or TLS trusting `tlsCa` (with a client certificate when one is given). */
function channelCredentials(c: Connection): ChannelCredentials {
  if (!c.tlsCa) {
    if (c.tlsCert || c.tlsKey) throw new NanoError("INVALID_ARGUMENT", "--tls-cert and --tls-key need --tls-ca too (the CA that signed the daemon's certificate).");
    return credentials.createInsecure();
  }
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) throw new NanoError("INVALID_ARGUMENT", "A client certificate needs both --tls-cert and --tls-key.");
  return credentials.createSsl(readPem(c.tlsCa, "--tls-ca"), c.tlsKey ? readPem(c.tlsKey, "--tls-key") : null, c.tlsCert ? readPem(c.tlsCert, "--tls-cert") : null);
}

function readPem(file: string, flag: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new NanoError("INVALID_ARGUMENT", `Cannot read ${flag} ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the path of a PEM file.`);
  }
}

/** Runs a client function for the model; a throw or a missing handler becomes an error result. */
async function answerCall(fc: FunctionCall, handler: FunctionHandler | undefined): Promise<{ result: string; isError: boolean }> {
  if (!handler) return { result: `this client has no function ${fc.name}`, isError: true };
  try {
    return await handler(fc);
  } catch (err) {
    return { result: `${fc.name} threw: ${err instanceof Error ? err.message : String(err)}`, isError: true };
  }
}

export { status as grpcStatus, NanoError };
