import path from "node:path";
import { setMaxListeners } from "node:events";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { ChatServiceService, fail, formatAddress, ModelServiceService, parseAddress, SessionServiceService } from "@nanollm/shared";
import { startEngine } from "./engine/ModelHost.js";
import type { GpuChoice, KvCacheType } from "./engine/types.js";
import { ModelRegistry } from "./models/ModelRegistry.js";
import { chatHandler } from "./rpc/chatHandler.js";
import { tolerant } from "./rpc/malformed.js";
import { modelHandlers, sessionHandlers, type DaemonState } from "./rpc/handlers.js";
import { SessionJournal } from "./sessions/SessionJournal.js";
import { SessionStore } from "./sessions/SessionStore.js";
import type { ModelHost } from "./engine/ModelHost.js";
import { TemplateRegistry } from "./templates/TemplateRegistry.js";

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
  /** Where sessions are journaled; undefined keeps them in memory only. */
  dataDir: string | undefined;
  maxQueue?: number;
  maxSessions?: number;
  /** How long a turn waits for a client's function result (default 30 s). */
  functionTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RunningDaemon {
  /** The bound address, with the real port when 0 was asked for. */
  address: string;
  port: number;
  state: DaemonState;
  /** Stops accepting, lets running turns end for `graceMs`, then cancels them and frees the models. */
  close(graceMs?: number): Promise<void>;
}

/** Loads the default model and serves the gRPC API until closed. */
export async function startDaemon(opts: DaemonOptions): Promise<RunningDaemon> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const info = await startEngine({ gpu: opts.gpu, threads: opts.threads, batchThreads: opts.batchThreads, log });
  const engine = { gpu: opts.gpu, threads: info.threads, batchThreads: info.batchThreads, adaptiveThreads: info.adaptiveThreads, adaptiveBatchThreads: info.adaptiveBatchThreads, parallel: opts.parallel, ctx: opts.ctx, kvCacheType: opts.kvCacheType, maxQueue: opts.maxQueue ?? 256, swapDir: opts.dataDir && path.join(opts.dataDir, "kv"), log };
  const { host, port } = parseAddress(opts.listen);
  const models = new ModelRegistry(engine);
  const defaultHost = await models.loadDefault(opts.modelPath);
  const journal = opts.dataDir ? new SessionJournal(opts.dataDir, log) : undefined;
  const sessions = new SessionStore(new TemplateRegistry(), journal, opts.maxSessions);
  if (journal) restoreSessions(journal, sessions, defaultHost, log);
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
    log,
  };
  const shutdown = new AbortController();
  // Every open Chat stream listens for shutdown; there may be hundreds.
  setMaxListeners(0, shutdown.signal);
  const server = new Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
  server.addService(tolerant(SessionServiceService), sessionHandlers(state));
  server.addService(tolerant(ModelServiceService), modelHandlers(state));
  server.addService(tolerant(ChatServiceService), { chat: chatHandler(state, shutdown.signal) });
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(formatAddress(host, port), ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  ).catch(async (err: Error) => {
    await models.dispose();
    throw fail.unavailable(`Cannot listen on ${opts.listen} (${err.message}); pick another address with --listen.`);
  });
  const address = formatAddress(host, boundPort);
  log(`nanollm daemon listening on ${address} (backend ${info.backend}, ${info.binary} llama.cpp binary, ${threadsText(info.threads, info.adaptiveThreads)} per decode step, ${threadsText(info.batchThreads, info.adaptiveBatchThreads)} per batch, ${opts.parallel} sequences × ${opts.ctx} tokens)`);

  let closing: Promise<void> | undefined;
  const close = (graceMs = 5000) =>
    (closing ??= (async () => {
      const graceful = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      const timer = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([graceful, timer]);
      shutdown.abort();
      server.forceShutdown();
      await models.dispose();
    })());
  return { address, port: boundPort, state, close };
}

/** Restores the journaled sessions of the default model; others stay on disk for their model. */
function restoreSessions(journal: SessionJournal, sessions: SessionStore, host: ModelHost, log: (line: string) => void): void {
  const records = journal.loadAll();
  const mine = records.filter((r) => r.modelFile === host.facts.file);
  for (const record of mine) sessions.restore(record, host);
  const others = records.length - mine.length;
  if (records.length > 0) log(`restored ${mine.length} sessions from ${journal.dir}${others ? ` (${others} for other models left on disk)` : ""}`);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** "2 threads", or "1 or 2 threads (measured)" when the loop chooses. */
function threadsText(n: number, adaptive: boolean): string {
  return adaptive && n > 1 ? `1 or ${n} threads (measured)` : plural(n, "thread");
}
