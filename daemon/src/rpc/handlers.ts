import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from "@grpc/grpc-js";
import { VERSION, type ModelServiceServer, type SessionServiceServer } from "@nanollm/shared";
import type { ModelRegistry } from "../models/ModelRegistry.js";
import type { SessionStore } from "../sessions/SessionStore.js";
import { messageFromWire, modelInfo, overflowFromWire, sessionInfo } from "./convert.js";
import { toServiceError } from "./errors.js";
import { checkDecoded } from "./malformed.js";
import { FunctionSet } from "../functions/FunctionSet.js";

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
  log: (line: string) => void;
}

/** Wraps an async handler so its result or its typed error becomes the unary reply. */
function unary<Req, Res>(log: DaemonState["log"], fn: (req: Req) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => {
        checkDecoded(call.request, call.getPath());
        return fn(call.request);
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
    createSession: unary(log, async (req) => {
      const host = await models.get(req.model);
      const session = await sessions.create({
        host,
        template: req.chatTemplate,
        systemPrompt: req.systemPrompt,
        defaults: req.defaults,
        history: req.history.map(messageFromWire),
        overflow: overflowFromWire(req.overflow),
        functions: FunctionSet.build(req.builtinFunctions, req.clientFunctions),
      });
      return sessionInfo(session, true);
    }),
    getSession: unary(log, (req) => sessionInfo(sessions.get(req.sessionId), req.withHistory)),
    listSessions: unary(log, () => ({ sessions: sessions.list().map((s) => sessionInfo(s, false)) })),
    resetSession: unary(log, async (req) => sessionInfo(await sessions.reset(req.sessionId), false)),
    updateSession: unary(log, async (req) =>
      sessionInfo(
        await sessions.update(req.sessionId, {
          systemPrompt: req.systemPrompt,
          template: req.chatTemplate,
          defaults: req.defaults,
          functions: req.setFunctions ? FunctionSet.build(req.builtinFunctions, req.clientFunctions) : undefined,
        }),
        false,
      ),
    ),
    truncateSession: unary(log, async (req) => sessionInfo(await sessions.truncate(req.sessionId, req.keepMessages), false)),
    deleteSession: unary(log, async (req) => {
      await sessions.delete(req.sessionId);
      return {};
    }),
  };
}

export function modelHandlers(state: DaemonState): ModelServiceServer & UntypedServiceImplementation {
  return {
    listModels: unary(state.log, async () => ({ models: (await state.models.list()).map((m) => modelInfo(m, state.sessions.templates)) })),
    getServerInfo: unary(state.log, () => ({
      version: VERSION,
      backend: state.backend,
      threads: state.threads,
      batchThreads: state.batchThreads,
      binary: state.binary,
      parallel: state.parallel,
      sessions: state.sessions.size,
      startedAtMs: state.startedAt,
    })),
  };
}
