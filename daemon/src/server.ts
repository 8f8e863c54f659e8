import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { setMaxListeners } from "node:events";
import { logVerbosity, Server, setLogVerbosity } from "@grpc/grpc-js";
import { ChatServiceService, fail, formatAddress, ModelServiceService, parseAddress, parseBytes, parseKeepAlive, readEnv, SessionServiceService } from "@nanollm/shared";
import { Authenticator } from "./auth/authenticate.js";
import { checkExposure, serverCredentials, type TlsFiles } from "./auth/exposure.js";
import { guard } from "./auth/guard.js";
import { TokenFile } from "./auth/TokenFile.js";
import { advertise } from "./discovery/advertise.js";
import { Metrics } from "./metrics/Metrics.js";
import { TurnObserver } from "./metrics/TurnObserver.js";
import { addStandardServices, setHealth } from "./rpc/standard.js";
import { listen } from "./listener.js";
import { startEngine } from "./engine/ModelHost.js";
import type { GpuChoice, KvCacheType } from "./engine/types.js";
import { ModelRegistry } from "./models/ModelRegistry.js";
import { defaultBudget } from "./models/defaultBudget.js";
import { chatHandler } from "./rpc/chatHandler.js";
import { tolerant } from "./rpc/malformed.js";
import { encodeOnce } from "./rpc/encodeOnce.js";
import { attachHandler } from "./rpc/attachHandler.js";
import { modelHandlers, sessionHandlers, type DaemonState } from "./rpc/handlers.js";
import { SessionJournal, type SessionRecord } from "./sessions/SessionJournal.js";
import { SessionStore } from "./sessions/SessionStore.js";
import type { Journal } from "./sessions/Journal.js";
import { PgJournal } from "./sessions/postgres/PgJournal.js";
import { TurnGate } from "./sessions/TurnGate.js";
import type { ModelHost } from "./engine/ModelHost.js";
import { TemplateRegistry } from "./templates/TemplateRegistry.js";
import type { Authorize } from "./http/auth.js";
import { checkHttpExposure, startHttp, type RunningHttp } from "./http/server.js";
import { StatelessSessions } from "./sessions/StatelessSessions.js";

export interface DaemonOptions {
  /** Path of the default model (already resolved from any hf: URI). */
  modelPath: string;
  listen: string;
  /** Threads for one-token decode steps (default: chosen by the engine for its binary). */
  threads?: number;
  /** Threads for batches of several tokens (default: every core). */
  batchThreads?: number;
  parallel: number;
  ctx: number;
  gpu: GpuChoice;
  kvCacheType: KvCacheType;
  /** The default model's image projector: a file, "none", or undefined for an mmproj*.gguf beside it. */
  mmproj?: string;
  /** Where sessions are journaled (unless `store` is given) and KV caches parked; undefined keeps them in memory only. */
  dataDir: string | undefined;
  /** postgres://… : keep sessions in this database, shared with the other daemons that name it. */
  store?: string;
  /** How long a session's lease lasts unrenewed in the shared store (default: NANOLLM_LEASE_TTL_MS, 15 s). */
  leaseTtlMs?: number;
  /** How long a store statement is retried while the database is unreachable (default: NANOLLM_STORE_RETRY_MS, 10 s). */
  storeRetryMs?: number;
  /** This daemon's name in the shared store's leases (default HOSTNAME/PID-RANDOM). */
  daemonId?: string;
  maxQueue?: number;
  maxSessions?: number;
  /** How long a turn waits for a client's function result (default 30 s). */
  functionTimeoutMs?: number;
  /** The tokens file (default DATA_DIR/tokens.json; none when there is no data dir). */
  tokensFile?: string;
  /** PEM files to serve TLS with; a client CA makes it mutual. */
  tls?: TlsFiles;
  /** Serve a non-loopback address without TLS and authentication anyway. */
  insecure?: boolean;
  /** HOST:PORT of the Prometheus /metrics listener (default: none). */
  metrics?: string;
  /** Announce the daemon on the LAN with mDNS/DNS-SD. */
  advertise?: boolean;
  /** Put the user's text in the per-turn log lines. */
  logText?: boolean;
  /** Where models named by clients are looked up as NAME.gguf (the catalogue `nanollm models` lists). */
  modelsDir?: string;
  /** Bytes loaded models may take together (default: the machine's memory less a margin). */
  memoryBudget?: number;
  /** How long an idle model stays loaded, in ms: -1 forever, 0 unloaded after each turn (default NANOLLM_KEEP_ALIVE, 5 min). */
  keepAliveMs?: number;
  /** Sessions one owner may keep (default: NANOLLM_MAX_SESSIONS_PER_OWNER, else maxSessions). */
  maxSessionsPerOwner?: number;
  /** How long a Chat stream may stay unread before its turns are cancelled (default: NANOLLM_WRITE_TIMEOUT_MS, 30 s). */
  writeTimeoutMs?: number;
  /** Events of finished turns each session keeps for reattaching clients (default NANOLLM_REPLAY_EVENTS). */
  replayEvents?: number;
  /** Events a watcher may fall behind before it is dropped (default NANOLLM_WATCH_BEHIND_EVENTS). */
  watchBehindEvents?: number;
  /** How long a resumable turn whose client dropped goes on unwatched (default NANOLLM_RESUME_GRACE_MS). */
  resumeGraceMs?: number;
  /** Client connections served at once (default: NANOLLM_MAX_CONNECTIONS, 256). */
  maxConnections?: number;
  /** Concurrent calls per connection (default: NANOLLM_MAX_STREAMS, 100). */
  maxStreams?: number;
  /** A connection without calls for this long is closed (default: NANOLLM_IDLE_TIMEOUT_MS, 5 min). */
  idleTimeoutMs?: number;
  /**
   * The OpenAI/Ollama HTTP APIs: where to serve them; `required` makes a busy address fatal (asked
   * for explicitly), otherwise the daemon logs it and serves gRPC alone. Undefined: no HTTP.
   */
  http?: { listen: string; required: boolean; bodyBytes?: number; authorize?: Authorize };
  /**
   * Ephemeral sessions kept for stateless HTTP clients (default 4 per sequence, at least 16): each
   * may park a KV cache on disk, so the bound is also a bound on that disk use.
   */
  maxStatelessSessions?: number;
  log?: (line: string) => void;
}

export interface RunningDaemon {
  /** The bound address, with the real port when 0 was asked for. */
  address: string;
  port: number;
  /** The bound address of the /metrics listener, when --metrics was given. */
  metricsAddress: string | undefined;
  /** The HTTP APIs' bound address, when they are served. */
  http: { address: string; port: number } | undefined;
  state: DaemonState;
  /**
   * Drains: health turns NOT_SERVING and new turns are refused UNAVAILABLE while running ones end,
   * for up to `graceMs`; then cancels the rest (keeping what they generated), stops serving, parks
   * the KV caches, releases the shared store's leases and frees the models.
   */
  close(graceMs?: number): Promise<void>;
}

/** Loads the default model and serves the gRPC API until closed. */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const info = await startEngine({ gpu: opts.gpu, threads: opts.threads, batchThreads: opts.batchThreads, log });
  const engine = { gpu: opts.gpu, threads: info.threads, batchThreads: info.batchThreads, adaptiveThreads: info.adaptiveThreads, adaptiveBatchThreads: info.adaptiveBatchThreads, parallel: opts.parallel, ctx: opts.ctx, kvCacheType: opts.kvCacheType, maxQueue: opts.maxQueue ?? 256, swapDir: opts.dataDir && path.join(opts.dataDir, "kv"), log };
  const { host, port } = parseAddress(opts.listen);
  if (opts.dataDir) removeStrayKvTemps(path.join(opts.dataDir, "kv"), log);
  // Checked before the model loads, so a refused setup fails fast.
  const credentials = serverCredentials(opts.tls ?? {});
  const tokensFile = opts.tokensFile ?? (opts.dataDir && path.join(opts.dataDir, "tokens.json"));
  const tokens = tokensFile ? new TokenFile(tokensFile) : undefined;
  const tls = Boolean(opts.tls?.cert);
  const clientCertificates = Boolean(opts.tls?.clientCa);
  const auth = new Authenticator({ tokens, clientCertificates, required: false });
  const warning = checkExposure(host, opts.listen, { tls, auth: auth.enabled, insecure: opts.insecure === true });
  const httpWarning = opts.http && checkHttpExposure(opts.http.listen, opts.insecure === true);
  const env = readEnv();
  // The shared store is reached (and migrated) before the model loads, so a wrong URL fails fast.
  const journal: Journal | undefined = opts.store
    ? await PgJournal.open({ url: opts.store, holder: opts.daemonId ?? `${os.hostname()}/${process.pid}-${randomBytes(2).toString("hex")}`, leaseTtlMs: opts.leaseTtlMs ?? env.leaseTtlMs, retryMs: opts.storeRetryMs ?? env.storeRetryMs, log })
    : opts.dataDir
      ? new SessionJournal(opts.dataDir, log)
      : undefined;
  const maxSessions = opts.maxSessions ?? env.maxSessions;
  const perOwner = opts.maxSessionsPerOwner ?? env.maxSessionsPerOwner ?? maxSessions;
  const sessions = new SessionStore(new TemplateRegistry(), journal, maxSessions, opts.dataDir, () => perOwner, log);
  const models = new ModelRegistry(engine, opts.modelsDir, {
    memoryBudget: opts.memoryBudget ?? (env.memoryBudget ? parseBytes(env.memoryBudget, "a memory budget (NANOLLM_MEMORY_BUDGET)") : defaultBudget(info.backend, log)),
    budgetGiven: opts.memoryBudget !== undefined || env.memoryBudget !== undefined,
    keepAliveMs: opts.keepAliveMs ?? parseKeepAlive(env.keepAlive),
    // Listing a session renders its prompt, which needs the tokenizer: render each while it is there.
    beforeUnload: (host) => {
      for (const s of sessions.all()) {
        try {
          if (s.host === host) s.contextUsed();
        } catch {
          // A session that cannot be rendered is left out of listings with its reason then.
        }
      }
    },
  });
  const defaultHost = await models.loadDefault(opts.modelPath, opts.mmproj).catch(async (err: unknown) => {
    await journal?.close();
    throw err;
  });
  sessions.hostFor = (file, load) => hostFor(models, file, load);
  if (journal instanceof SessionJournal) await restoreSessions(journal, sessions, models, defaultHost, log);
  if (journal instanceof PgJournal) log(`sessions are kept in ${journal.where} (shared; leases as ${journal.leases.holder}, ${journal.leases.ttlMs / 1000} s)`);
  sessions.feedLimits = { replay: opts.replayEvents ?? env.replayEvents, behind: opts.watchBehindEvents ?? env.watchBehindEvents };
  const metrics = new Metrics(sessions);
  metrics.watchModels(models);
  const state: DaemonState = {
    models,
    sessions,
    backend: info.backend,
    threads: info.threads,
    batchThreads: info.batchThreads,
    binary: info.binary,
    parallel: opts.parallel,
    startedAt: Date.now(),
    functionTimeoutMs: opts.functionTimeoutMs ?? 30_000,
    exposure: { tls, auth: () => auth.enabled, insecure: warning !== undefined },
    turns: new TurnObserver(metrics, log, opts.logText === true),
    gate: new TurnGate(),
    writeTimeoutMs: opts.writeTimeoutMs ?? env.writeTimeoutMs,
    resumeGraceMs: opts.resumeGraceMs ?? env.resumeGraceMs,
    log,
  };
  const shutdown = new AbortController();
  // Every open Chat stream listens for shutdown; there may be hundreds.
  setMaxListeners(0, shutdown.signal);
  const idleTimeoutMs = opts.idleTimeoutMs ?? env.idleTimeoutMs;
  const server = new Server({
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: one connection cannot open calls without bound.
    "grpc.max_concurrent_streams": opts.maxStreams ?? env.maxStreams,
    "grpc.max_connection_idle_ms": idleTimeoutMs,
    // Pings find a client that vanished with a Wi-Fi link within ~1.5 min, not at TCP's hours.
    "grpc.keepalive_time_ms": Math.min(idleTimeoutMs, 60_000),
    "grpc.keepalive_timeout_ms": 20_000,
  });
  const services = [
    [SessionServiceService, sessionHandlers(state)],
    [ModelServiceService, modelHandlers(state)],
    [ChatServiceService, { chat: chatHandler(state, shutdown.signal), attach: attachHandler(state, shutdown.signal) }],
  ] as const;
  for (const [service, handlers] of services) server.addService(tolerant(encodeOnce(service)), guard(service, handlers, auth, log));
  const health = addStandardServices(server);
  // grpc-js logs a failed bind itself ("E No address added ..."); the sentence below says it once.
  setLogVerbosity(logVerbosity.NONE);
  const listener = await listen(server, credentials, host, port, { maxConnections: opts.maxConnections ?? env.maxConnections, tls }, log)
    .catch(async (err: Error) => {
      await models.dispose();
      await journal?.close();
      const why = /EADDRINUSE/.test(err.message) ? "the address is already in use" : /EADDRNOTAVAIL/.test(err.message) ? "no interface has that address" : err.message;
      throw fail.unavailable(`Cannot listen on ${opts.listen} (${why}); pick another address with --listen.`);
    })
    .finally(() => setLogVerbosity(logVerbosity.ERROR));
  const boundPort = listener.port;
  const stateless = new StatelessSessions(sessions, opts.maxStatelessSessions ?? Math.max(16, 4 * opts.parallel));
  let http: RunningHttp | undefined;
  if (opts.http) {
    try {
      // The same credentials as gRPC: an OpenAI client's API key is a nanollm token.
      const authorize: Authorize = opts.http.authorize ?? ((req) => auth.authenticate(req.headers, { address: req.remoteAddress ?? "" }));
      http = await startHttp({ state, stateless, shutdown: shutdown.signal }, { listen: opts.http.listen, bodyBytes: opts.http.bodyBytes ?? 16 * 1024 * 1024, authorize });
      log(`OpenAI API on http://${http.address}/v1, Ollama API on http://${http.address}/api`);
    } catch (err) {
      if (opts.http.required) {
        server.forceShutdown();
        listener.close();
        await models.dispose();
        await journal?.close();
        throw err;
      }
      log(`${(err as Error).message} The daemon serves gRPC only.`);
    }
  }
  // Logged last: "listening" means every API is up.
  const address = formatAddress(host, boundPort);
  const metricsServer = opts.metrics ? await metrics.serve(opts.metrics) : undefined;
  const announced = opts.advertise
    ? advertise({ port: boundPort, host: host === "0.0.0.0" || host === "::" ? undefined : host, model: defaultHost.facts.name, tls, auth: auth.enabled }, log)
    : undefined;
  setHealth(health, true);
  if (warning) log(warning);
  if (httpWarning && http) log(httpWarning);
  log(`security: ${tls ? `TLS${clientCertificates ? " with client certificates" : ""}` : "plaintext"}, ${auth.enabled ? `authentication on (${auth.count()} tokens${tokens ? ` in ${tokens.file}` : ""})` : "no authentication"}${metricsServer ? `; metrics on http://${metricsServer.address}/metrics` : ""}`);
  log(`nanollm daemon listening on ${address} (backend ${info.backend}, llama.cpp ${info.binary}, ${threadsText(info.threads, info.adaptiveThreads)} per decode step, ${threadsText(info.batchThreads, info.adaptiveBatchThreads)} per batch, ${opts.parallel} sequences × ${defaultHost.facts.contextSize} tokens)`);

  let closing: Promise<void> | undefined;
  const close = (graceMs = 5000) =>
    (closing ??= (async () => {
      // Draining: still serving (health checks, running turns), refusing new turns.
      state.gate.close();
      setHealth(health, false);
      await announced?.();
      const running = state.gate.size;
      if (running > 0) log(`draining: ${plural(running, "turn")} running, waiting up to ${graceMs / 1000} s for them to end`);
      const drained = await Promise.race([state.gate.idle().then(() => true), sleep(graceMs, false, { ref: false })]);
      if (!drained) log(`draining: cancelling ${plural(state.gate.size, "turn")} still running after ${graceMs / 1000} s; what they generated is kept`);
      shutdown.abort();
      // Cancelled turns save what they generated before the journal closes.
      await Promise.race([state.gate.idle(), sleep(5000, undefined, { ref: false })]);
      const graceful = Promise.all([new Promise<void>((resolve) => server.tryShutdown(() => resolve())), http?.close()]);
      listener.close();
      await Promise.race([graceful, sleep(Math.min(graceMs, 1000), undefined, { ref: false })]);
      server.forceShutdown();
      await metricsServer?.close();
      await http?.close();
      // Stateless sessions end with the process: their caches must not be parked on disk for nobody.
      await stateless.dispose();
      // A turn that just ended may still be bringing its cache up to date; parked half-way it is lost.
      await Promise.all(sessions.all().map((s) => s.cacheSync));
      await models.dispose();
      await journal?.close();
    })());
  return { address, port: boundPort, metricsAddress: metricsServer?.address, http: http && { address: http.address, port: http.port }, state, close };
}

/**
 * Restores the journaled sessions: the default model's, and those of other models whose files are
 * still there (each loaded for it, within the memory budget; keep-alive unloads it later). A
 * record that fails the checks a request would (settings, template, functions, token ids) is
 * quarantined with a log line; the other sessions load.
 */
async function restoreSessions(journal: SessionJournal, sessions: SessionStore, models: ModelRegistry, defaultHost: ModelHost, log: (line: string) => void): Promise<void> {
  const records = journal.loadAll();
  const byFile = new Map<string, SessionRecord[]>();
  for (const r of records) {
    const list = byFile.get(r.modelFile) ?? [];
    list.push(r);
    byFile.set(r.modelFile, list);
  }
  let restored = 0;
  let left = 0;
  for (const [file, mine] of byFile) {
    let host = file === defaultHost.facts.file ? defaultHost : undefined;
    if (!host && fs.existsSync(file)) {
      host = await models.get(file, true).catch((err: Error) => {
        log(`could not load ${file} for its ${plural(mine.length, "session")} (${err.message}); they stay on disk`);
        return undefined;
      });
    }
    if (!host) {
      left += mine.length;
      continue;
    }
    for (const record of mine) {
      try {
        sessions.restore(record, host);
        restored++;
      } catch (err) {
        journal.quarantine(record.id, err instanceof Error ? err.message : String(err));
      }
    }
  }
  if (records.length > 0) log(`restored ${plural(restored, "session")} from ${journal.dir}${left ? ` (${left} for models not found left on disk)` : ""}`);
}

/**
 * The model a journaled session runs on: by file, else by name (another machine's path). Listing
 * (`load` false) takes only a loaded one; otherwise a known one (loaded again by the session's
 * next turn) or one loaded from the models folder.
 */
async function hostFor(models: ModelRegistry, file: string, load: boolean): Promise<ModelHost | undefined> {
  const name = path.basename(file).replace(/\.gguf$/i, "");
  const loaded = load ? models.list() : models.listLoaded();
  const host = loaded.find((h) => h.facts.file === file) ?? loaded.find((h) => h.facts.name === name);
  return host ?? (load ? models.get(name) : undefined);
}

/** Removes the temp files of KV-cache saves a crash interrupted (DATA_DIR/kv/MODEL/*.tmp). */
function removeStrayKvTemps(kvDir: string, log: (line: string) => void): void {
  if (!fs.existsSync(kvDir)) return;
  let removed = 0;
  for (const entry of fs.readdirSync(kvDir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".tmp")) continue;
    fs.rmSync(path.join(entry.parentPath, entry.name), { force: true });
    removed++;
  }
  if (removed) log(`removed ${plural(removed, "unfinished KV-cache file")} from ${kvDir}`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** "2 threads", or "1 or 2 threads (measured)" when the loop chooses. */
function threadsText(n: number, adaptive: boolean): string {
  return adaptive && n > 1 ? `1 or ${n} threads (measured)` : plural(n, "thread");
}
