import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from "@grpc/grpc-js";
import { VERSION, type ModelServiceServer, type SessionInfo, type SessionServiceServer } from "@nanollm/shared";
import type { ModelRegistry } from "../models/ModelRegistry.js";
import type { Session } from "../sessions/Session.js";
import type { SessionStore } from "../sessions/SessionStore.js";
import { messageFromWire, modelInfo, overflowFromWire, sessionIdFromWire, sessionInfo, templateInfo } from "./convert.js";
import { toServiceError } from "./errors.js";
import { checkDecoded } from "./malformed.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import { identityOf } from "../auth/guard.js";
import type { Identity } from "../auth/Identity.js";
import type { TurnObserver } from "../metrics/TurnObserver.js";
import type { TurnGate } from "../sessions/TurnGate.js";

export interface DaemonState {
  models: ModelRegistry;
  sessions: SessionStore;
  backend: string;
  threads: number;
  batchThreads: number;
  binary: string;
  parallel: number;
  startedAt: number;
  /** How long a turn waits for a client to answer its function call. */
  functionTimeoutMs: number;
  /** How the daemon is exposed, for ServerInfo. */
  exposure: { tls: boolean; auth: () => boolean; insecure: boolean };
  /** Logs and counts each turn. */
  turns: TurnObserver;
  /** Counts running turns; refuses new ones while the daemon drains. */
  gate: TurnGate;
  /** How long a Chat stream may leave its events unread before its turns are cancelled. */
  writeTimeoutMs: number;
  log: (line: string) => void;
}

/** Wraps an async handler so its result or its typed error becomes the unary reply; it gets the caller the guard established. */
function unary<Req, Res>(log: DaemonState["log"], fn: (req: Req, who: Identity) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => {
        checkDecoded(call.request, call.getPath());
        return fn(call.request, identityOf(call));
      })
      .then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServiceError(err, log)),
      );
  };
}

export function sessionHandlers(state: DaemonState): SessionServiceServer & UntypedServiceImplementation {
  const { sessions, models, log } = state;
  return {
    createSession: unary(log, async (req, who) => {
      const host = await models.get(req.model, who.admin || who.loopback);
      const session = await sessions.create({
        host,
        template: req.chatTemplate,
        templateJson: req.chatTemplateJson,
        systemPrompt: req.systemPrompt,
        defaults: req.defaults,
        history: req.history.map(messageFromWire),
        overflow: overflowFromWire(req.overflow),
        functions: FunctionSet.build(req.builtinFunctions, req.clientFunctions),
        owner: who.name,
        id: sessionIdFromWire(req.sessionId),
      });
      return sessionInfo(session, true);
    }),
    getSession: unary(log, async (req, who) => sessionInfo(await sessions.find(req.sessionId, who), req.withHistory)),
    listSessions: unary(log, async (_req, who) => ({ sessions: (await sessions.listStored(who)).flatMap((s) => listed(s, log)) })),
    resetSession: unary(log, async (req, who) => sessionInfo(await sessions.reset(req.sessionId, who), false)),
    updateSession: unary(log, async (req, who) =>
      sessionInfo(
        await sessions.update(req.sessionId, who, {
          systemPrompt: req.systemPrompt,
          template: req.chatTemplate,
          templateJson: req.chatTemplateJson,
          defaults: req.defaults,
          functions: req.setFunctions ? FunctionSet.build(req.builtinFunctions, req.clientFunctions) : undefined,
        }),
        false,
      ),
    ),
    truncateSession: unary(log, async (req, who) => sessionInfo(await sessions.truncate(req.sessionId, who, req.dropLastExchange ? "last exchange" : req.keepMessages), false)),
    deleteSession: unary(log, async (req, who) => {
      await sessions.delete(req.sessionId, who);
      return {};
    }),
  };
}

/** One session's entry; a session that cannot be described is logged and left out, never failing the list. */
function listed(s: Session, log: DaemonState["log"]): SessionInfo[] {
  try {
    return [sessionInfo(s, false)];
  } catch (err) {
    log(`session ${s.id} left out of ListSessions: ${err instanceof Error ? err.message : String(err)}`);
    return [];
  }
}

export function modelHandlers(state: DaemonState): ModelServiceServer & UntypedServiceImplementation {
  return {
    listModels: unary(state.log, async () => ({ models: (await state.models.list()).map((m) => modelInfo(m, state.sessions.templates)) })),
    getServerInfo: unary(state.log, async (_req, who) => ({
      version: VERSION,
      backend: state.backend,
      threads: state.threads,
      batchThreads: state.batchThreads,
      binary: state.binary,
      parallel: state.parallel,
      sessions: await state.sessions.count(who),
      startedAtMs: state.startedAt,
      tls: state.exposure.tls,
      auth: state.exposure.auth(),
      insecure: state.exposure.insecure,
      identity: who.name,
      admin: who.admin,
    })),
    listTemplates: unary(state.log, () => ({ templates: state.sessions.templates.all().map(templateInfo) })),
  };
}
