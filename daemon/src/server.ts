import { Server, ServerCredentials } from "@grpc/grpc-js";
import { ChatServiceService, fail, formatAddress, ModelServiceService, parseAddress, SessionServiceService } from "@nanollm/shared";
import { backendName } from "./engine/ModelHost.js";
import type { GpuChoice, KvCacheType } from "./engine/types.js";
import { ModelRegistry } from "./models/ModelRegistry.js";
import { chatHandler } from "./rpc/chatHandler.js";
import { modelHandlers, sessionHandlers, type DaemonState } from "./rpc/handlers.js";
import { SessionStore } from "./sessions/SessionStore.js";
import { TemplateRegistry } from "./templates/TemplateRegistry.js";

export interface DaemonOptions {
  /** Path of the default model (already resolved from any hf: URI). */
  modelPath: string;
  listen: string;
  threads: number;
  parallel: number;
  ctx: number;
  gpu: GpuChoice;
  kvCacheType: KvCacheType;
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
  const engine = { gpu: opts.gpu, threads: opts.threads, parallel: opts.parallel, ctx: opts.ctx, kvCacheType: opts.kvCacheType, log };
  const { host, port } = parseAddress(opts.listen);
  const models = new ModelRegistry(engine);
  await models.loadDefault(opts.modelPath);
  const state: DaemonState = {
    models,
    sessions: new SessionStore(new TemplateRegistry()),
    backend: await backendName(engine),
    threads: opts.threads,
    parallel: opts.parallel,
    startedAt: Date.now(),
    log,
  };
  const shutdown = new AbortController();
  const server = new Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
  server.addService(SessionServiceService, sessionHandlers(state));
  server.addService(ModelServiceService, modelHandlers(state));
  server.addService(ChatServiceService, { chat: chatHandler(state, shutdown.signal) });
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(formatAddress(host, port), ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  ).catch(async (err: Error) => {
    await models.dispose();
    throw fail.unavailable(`Cannot listen on ${opts.listen} (${err.message}); pick another address with --listen.`);
  });
  const address = formatAddress(host, boundPort);
  log(`nanollm daemon listening on ${address} (backend ${state.backend}, ${opts.threads} threads, ${opts.parallel} sequences × ${opts.ctx} tokens)`);

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
