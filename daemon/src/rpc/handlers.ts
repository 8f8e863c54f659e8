import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { fail, VERSION, type LoadModelEvent, type LoadModelRequest, type ModelServiceServer, type SessionInfo, type SessionServiceServer } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { KvCacheType } from "../engine/types.js";
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
  /** How long a resumable turn whose client dropped goes on with nobody watching its session. */
  resumeGraceMs: number;
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
  /** Runs a change that tokenizes the session's conversation with its model loaded (again, if it was unloaded). */
  const withModel = async (id: string, who: Identity, fn: () => Promise<SessionInfo>) => withHost((await sessions.find(id, who)).host, fn);
  const withHost = async <T>(host: ModelHost, fn: () => Promise<T>): Promise<T> => {
    try {
      await host.begin();
      return await fn();
    } finally {
      host.end(false);
    }
  };
  return {
    createSession: unary(log, async (req, who) => {
      const host = await models.get(req.model, who.admin || who.loopback);
      const session = await withHost(host, () => sessions.create({
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
      }));
      return sessionInfo(session, true);
    }),
    getSession: unary(log, async (req, who) => sessionInfo(await sessions.find(req.sessionId, who), req.withHistory)),
    listSessions: unary(log, async (_req, who) => ({ sessions: (await sessions.listStored(who)).flatMap((s) => listed(s, log)) })),
    resetSession: unary(log, (req, who) => withModel(req.sessionId, who, async () => sessionInfo(await sessions.reset(req.sessionId, who), false))),
    updateSession: unary(log, (req, who) =>
      withModel(req.sessionId, who, async () => sessionInfo(
        await sessions.update(req.sessionId, who, {
          systemPrompt: req.systemPrompt,
          template: req.chatTemplate,
          templateJson: req.chatTemplateJson,
          defaults: req.defaults,
          functions: req.setFunctions ? FunctionSet.build(req.builtinFunctions, req.clientFunctions) : undefined,
        }),
        false,
      )),
    ),
    truncateSession: unary(log, (req, who) => withModel(req.sessionId, who, async () => sessionInfo(await sessions.truncate(req.sessionId, who, req.dropLastExchange ? "last exchange" : req.keepMessages), false))),
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
  const { models, log } = state;
  const describe = (h: ModelHost) => modelInfo(h, state.sessions.templates, { sessions: state.sessions.all().filter((s) => s.host === h).length, unloadsAt: h.turns > 0 ? undefined : models.unloadsAt(h) });
  return {
    listModels: unary(log, () => ({ models: models.listLoaded().map(describe) })),
    listLocalModels: unary(log, () => {
      const loaded = new Map(models.listLoaded().map((h) => [h.facts.file, h]));
      const local = models.catalogue().map((f) => {
        const host = loaded.get(f.file);
        loaded.delete(f.file);
        return { name: f.name, file: f.file, sizeBytes: f.sizeBytes, quantization: f.quantization, architecture: f.architecture, contextLength: f.contextLength, images: f.mmproj !== undefined, mmproj: f.mmproj ?? "", loaded: host && describe(host) };
      });
      // Loaded models from outside the folder (the daemon's --model, a path an admin named).
      const others = [...loaded.values()].map((h) => ({ name: h.facts.name, file: h.facts.file, sizeBytes: h.facts.sizeBytes, quantization: "", architecture: h.facts.architecture, contextLength: h.facts.trainContextSize, images: h.images !== undefined, mmproj: h.facts.mmproj ?? "", loaded: describe(h) }));
      return { models: [...local, ...others], memoryBudgetBytes: Math.min(models.policy.memoryBudget, Number.MAX_SAFE_INTEGER), memoryUsedBytes: models.memoryUsed(), modelsDir: models.modelsDir ?? "" };
    }),
    loadModel: (call: ServerWritableStream<LoadModelRequest, LoadModelEvent>) => {
      const req = call.request;
      const who = identityOf(call);
      (async () => {
        checkDecoded(req, "LoadModel");
        if (!req.name) throw fail.invalid("Name the model to load (see `nanollm models`).");
        if (req.kvCacheType && !["f16", "q8_0"].includes(req.kvCacheType)) throw fail.invalid(`--kv-cache-type must be f16 or q8_0, not "${req.kvCacheType}".`);
        if (req.ctx && req.ctx < 16) throw fail.invalid(`--ctx ${req.ctx} is too small; use at least 16 tokens.`);
        if (req.parallel > 256) throw fail.invalid(`--parallel ${req.parallel} is more than 256 sequences; use fewer.`);
        const settings = { ctx: req.ctx || undefined, parallel: req.parallel || undefined, kvCacheType: (req.kvCacheType || undefined) as KvCacheType | undefined };
        let last = -1;
        const host = await models.loadByName(req.name, settings, (progress) => {
          // At most a hundred events: whole percents.
          const step = Math.floor(progress * 100);
          if (step === last || call.cancelled) return;
          last = step;
          call.write({ kind: { $case: "progress", progress: { model: req.name, progress } } });
        }, who.admin || who.loopback);
        // A client that went away mid-load leaves the model loaded (keep-alive unloads it).
        if (call.cancelled) return;
        call.write({ kind: { $case: "loaded", loaded: describe(host) } });
        call.end();
      })().catch((err: unknown) => call.emit("error", toServiceError(err, log)));
    },
    unloadModel: unary(log, async (req, who) => {
      if (!(who.admin || who.loopback)) throw fail.denied("Only an admin or a client on the daemon's host may unload a model; models unload by themselves when idle (--keep-alive).");
      await models.unload(req.name);
      return {};
    }),
    getServerInfo: unary(log, async (_req, who) => ({
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
    listTemplates: unary(log, () => ({ templates: state.sessions.templates.all().map(templateInfo) })),
  };
}
