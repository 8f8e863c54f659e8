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
  type ListLocalModelsResponse,
  type LoadModelEvent,
  type LoadModelRequest,
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

/** How a turn is sent, besides its content. */
export interface TurnOptions {
  /** Fail at once (FAILED_PRECONDITION) when another turn runs on the session, instead of waiting for it. */
  noWait?: boolean;
  /** The turn's id (default: a new one). */
  turnId?: string;
}

/** Times a turn whose connection dropped tries to reattach, with backoff (about 8 s in all). */
const REATTACH_TRIES = 5;

/** Errors a turn ended with (its TurnError event), as opposed to a lost connection. */
const turnErrors = new WeakSet<Error>();

function turnFailed(error: { code: number; message: string }): NanoError {
  const err = new NanoError(FROM_STATUS[error.code as status] ?? "INTERNAL", error.message);
  turnErrors.add(err);
  return err;
}

/** The connection to the daemon failed (not the turn: a turn that failed said so in an event, whatever its code). */
function connectionLost(err: unknown): boolean {
  return err instanceof NanoError && err.code === "UNAVAILABLE" && !turnErrors.has(err);
}

/** A turn's id, chosen by the client: the chat screen knows it before the turn's first event. */
export function newTurnId(): string {
  return `t-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
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

  /** The daemon's models folder (and loaded models from elsewhere), with the memory budget. */
  listLocalModels(): Promise<ListLocalModelsResponse> {
    return this.unary((cb: Callback<ListLocalModelsResponse>) => this.models.listLocalModels({}, this.meta(), this.opts(), cb));
  }

  /** Loads a model by name, yielding its progress; the last event holds the loaded model. */
  async *loadModel(req: Partial<LoadModelRequest> & { name: string }): AsyncGenerator<LoadModelEvent> {
    const call = this.models.loadModel({ ctx: 0, parallel: 0, kvCacheType: "", ...req }, this.meta(), { deadline: Date.now() + 30 * 60_000 });
    try {
      for await (const event of call as AsyncIterable<LoadModelEvent>) yield event;
    } catch (err) {
      throw toClientError(err, this.host);
    } finally {
      call.cancel();
    }
  }

  async unloadModel(name: string): Promise<void> {
    await this.unary((cb: Callback<object>) => this.models.unloadModel({ name }, this.meta(), this.opts(), cb));
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
  async *turn(
    sessionId: string,
    text: string,
    params?: GenerationParams,
    signal?: AbortSignal,
    onFunctionCall?: FunctionHandler,
    images: { data: Uint8Array; name: string; offset?: number }[] = [],
    options: TurnOptions = {},
  ): AsyncGenerator<ChatEvent> {
    const turnId = options.turnId ?? newTurnId();
    let lastSeq: number | undefined;
    try {
      for await (const event of this.turnOnStream(sessionId, turnId, text, params, signal, onFunctionCall, images, options.noWait === true)) {
        lastSeq = event.seq || lastSeq;
        yield event;
      }
    } catch (err) {
      // The connection dropped mid-reply: the daemon goes on with the (resumable) turn, and the
      // events after the last one seen come back through Attach, none lost.
      if (!connectionLost(err) || lastSeq === undefined || signal?.aborted) throw err;
      try {
        yield* this.resume(sessionId, turnId, lastSeq, signal, onFunctionCall ?? this.functionHandler);
      } catch (resumeErr) {
        // No daemon holds the turn any more (it died, or restarted): the call broke, as first said.
        throw resumeErr instanceof NanoError && resumeErr.code === "OUT_OF_RANGE" ? err : resumeErr;
      }
    }
  }

  /**
   * The events of a session as they happen (Attach): from now on (a running turn from its start),
   * or after `afterSeq` (only turn `turnId`'s, when given: OUT_OF_RANGE where the daemon does not
   * hold it). Ends when `signal` aborts; a refusal or a lost connection throws.
   */
  async *attach(sessionId: string, afterSeq?: number, signal?: AbortSignal, turnId?: string): AsyncGenerator<ChatEvent> {
    const call = this.chat.attach({ sessionId, afterSeq, turnId }, this.meta(sessionId));
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const event of call as AsyncIterable<ChatEvent>) yield event;
    } catch (err) {
      if (signal?.aborted) return;
      throw toClientError(err, this.host);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /**
   * The rest of turn `turnId` after event `afterSeq`, read through Attach; a lost connection is
   * tried again (after 0.25, 0.5, 1, 2, 4 s, then it throws), each time from the last event seen.
   * A cancel asked for now goes as a CancelTurn on a new stream (the turn's own stream is gone).
   */
  private async *resume(sessionId: string, turnId: string, afterSeq: number, signal: AbortSignal | undefined, onFunctionCall: FunctionHandler | undefined): AsyncGenerator<ChatEvent> {
    let last = afterSeq;
    const onAbort = () => this.cancelTurn(sessionId, turnId);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (let attempt = 0; ; attempt++) {
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
        try {
          for await (const event of this.attach(sessionId, last, undefined, turnId)) {
            last = event.seq ?? last;
            if (event.turnId !== turnId) continue;
            const kind = event.kind;
            if (kind?.$case === "error") throw turnFailed(kind.error);
            yield event;
            // A call of this client's functions is answered on a new stream, as the cancel is.
            const fc = kind?.$case === "functionCall" ? kind.functionCall : undefined;
            if (fc?.clientSide) void answerCall(fc, onFunctionCall).then((answer) => this.sendOnce(sessionId, { kind: { $case: "functionResult", functionResult: { callId: fc.callId, ...answer } } }));
            if (kind?.$case === "end") return;
          }
        } catch (err) {
          if (!connectionLost(err) || attempt + 1 >= REATTACH_TRIES) throw err;
        }
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Asks the daemon to stop turn `turnId` of this identity, whichever stream started it. */
  private cancelTurn(sessionId: string, turnId: string): void {
    this.sendOnce(sessionId, { kind: { $case: "cancel", cancel: { turnId } } });
  }

  /** One request on a Chat stream of its own (for a turn whose stream is gone), then half-closed. */
  private sendOnce(sessionId: string, req: ChatRequest): void {
    const call: ClientDuplexStream<ChatRequest, ChatEvent> = this.chat.chat(this.meta(sessionId));
    call.on("error", () => undefined);
    call.on("data", () => undefined);
    call.write(req);
    call.end();
  }

  private async *turnOnStream(
    sessionId: string,
    turnId: string,
    text: string,
    params: GenerationParams | undefined,
    signal: AbortSignal | undefined,
    onFunctionCall: FunctionHandler | undefined,
    images: { data: Uint8Array; name: string; offset?: number }[],
    noWait: boolean,
  ): AsyncGenerator<ChatEvent> {
    const call: ClientDuplexStream<ChatRequest, ChatEvent> = this.chat.chat(this.meta(sessionId));
    const onAbort = () => !call.writableEnded && call.write({ kind: { $case: "cancel", cancel: { turnId } } });
    signal?.addEventListener("abort", onAbort, { once: true });
    let ended = false;
    try {
      call.write({ kind: { $case: "userTurn", userTurn: { sessionId, text, params, turnId, images: images.map((i) => ({ name: i.name, data: Buffer.from(i.data), offset: i.offset ?? 0 })), noWait, resumable: true } } });
      if (signal?.aborted) onAbort();
      for await (const event of call as AsyncIterable<ChatEvent>) {
        const kind = event.kind;
        if (kind?.$case === "error") {
          ended = true;
          call.end();
          throw turnFailed(kind.error);
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
