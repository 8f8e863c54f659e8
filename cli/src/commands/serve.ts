import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { loadDaemon } from "./loadDaemon.js";
import { DEFAULT_HTTP, DEFAULT_LISTEN, DEFAULT_MODEL_URI, NanoError, parseBytes, parseKeepAlive, readEnv, readyLine } from "@nanollm/shared";
import { choiceArg, intArg, numArg } from "./options.js";

const GPUS = ["auto", "cpu", "cuda", "vulkan", "metal"] as const;
const KV_TYPES = ["f16", "q8_0"] as const;

export function serveCommand(): Command {
  const env = readEnv();
  return new Command("serve")
    .description("start the daemon: load a model and serve the gRPC API")
    .option("-m, --model <path|hf:uri>", `GGUF model file or hf: URI (env NANOLLM_MODEL; default ${DEFAULT_MODEL_URI})`, env.model)
    .option("-l, --listen <host:port>", `address to bind (env NANOLLM_LISTEN); off loopback it needs --tls-cert/--tls-key and a token (\`nanollm tokens add\`), or --insecure`, env.listen)
    .option("--http <host:port|off>", `address of the OpenAI- and Ollama-compatible HTTP APIs, or off (env NANOLLM_HTTP; default ${DEFAULT_HTTP}; they take the same tokens as gRPC, and have no TLS, so off loopback only with --insecure)`, env.http)
    .option("-t, --threads <n>", "threads per one-token decode step (env NANOLLM_THREADS; default: 1 or every core, whichever measures faster)", intArg(1, 1024), env.threads)
    .option("--batch-threads <n>", "threads for prompts and multi-session steps (env NANOLLM_BATCH_THREADS; default: 1 or every core, whichever measures faster)", intArg(1, 1024), env.batchThreads)
    .option("-p, --parallel <n>", "sessions holding a KV cache at once (env NANOLLM_PARALLEL)", intArg(1, 256), env.parallel)
    .option("-c, --ctx <n>", "context tokens per session (env NANOLLM_CTX)", intArg(16, 1 << 20), env.ctx)
    .option("--gpu <kind>", `compute backend: ${GPUS.join("|")} (env NANOLLM_GPU)`, choiceArg(GPUS), env.gpu as (typeof GPUS)[number])
    .option("--kv-cache-type <type>", `KV cache element type: ${KV_TYPES.join("|")} (env NANOLLM_KV_CACHE_TYPE)`, choiceArg(KV_TYPES), env.kvCacheType as (typeof KV_TYPES)[number])
    .option("--data-dir <dir>", "where sessions are journaled and restored from (unless --store), KV caches parked and tokens kept (env NANOLLM_DATA_DIR)", env.dataDir)
    .option("--mmproj <file>", "the model's image projector (env NANOLLM_MMPROJ; default: an mmproj*.gguf beside the model; none: no images)", env.mmproj)
    .option("--models-dir <dir>", "the models folder: what `nanollm models` lists and `load` takes by name, and where `pull` writes (env NANOLLM_MODELS_DIR)", env.modelsDir)
    .option("--memory-budget <bytes>", "memory the loaded models may take together, e.g. 8G or 512M; past it the least recently used idle model is unloaded (env NANOLLM_MEMORY_BUDGET; default: the machine's memory less a quarter, at most 4 GiB less; on CUDA the GPU's memory less a tenth)", asArg((v) => parseBytes(v, "a memory budget")))
    .option("--keep-alive <duration>", "how long an idle model stays loaded: 5m, 30s, 1h; 0 unloads it after each turn, -1 never (env NANOLLM_KEEP_ALIVE; default 5m)", asArg(parseKeepAlive), parseKeepAlive(env.keepAlive))
    .option("--ephemeral", "keep sessions in memory only (nothing written, nothing restored)")
    .option("--store <postgres://user@host:port/db>", "keep sessions in PostgreSQL, shared with every daemon that names the same database (env NANOLLM_STORE; default: files under --data-dir)", env.store)
    .option("--drain-grace <seconds>", "on SIGTERM, how long running turns may take to end before they are cancelled (env NANOLLM_DRAIN_GRACE)", numArg(0, 86_400), env.drainGrace)
    .option("--max-queue <n>", "turns that may wait for a free sequence (env NANOLLM_MAX_QUEUE)", intArg(0, 1 << 20), env.maxQueue)
    .option("--tls-cert <pem>", "serve TLS with this certificate (e.g. server.pem from `nanollm certs init`)")
    .option("--tls-key <pem>", "the certificate's private key")
    .option("--tls-client-ca <pem>", "require client certificates signed by this CA (mutual TLS); a certificate's CN is its identity")
    .option("--insecure", "serve a non-loopback address without TLS and authentication anyway (loudly warned)")
    .option("--metrics <host:port>", "serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9433)")
    .option("--advertise", "announce the daemon on the LAN (mDNS/DNS-SD) for `nanollm discover` and `chat --host auto`")
    .option("--log-text", "include the users' messages and the replies in the per-turn log lines")
    .action(async (opts: ServeFlags) => {
      // The daemon (and node-llama-cpp) load only for `serve`, so `chat` starts fast.
      const { startDaemon, resolveModel } = await loadDaemon("serve");
      const modelPath = await resolveModel(opts.model ?? DEFAULT_MODEL_URI, opts.modelsDir, { connectTimeoutMs: env.connectTimeoutMs, offlineHint: "when offline, pass --model PATH.gguf with a model file you have." });
      // The default address is a convenience: if it is taken, the daemon serves gRPC alone and says so.
      const http = opts.http === "off" ? undefined : { listen: opts.http ?? DEFAULT_HTTP, required: opts.http !== undefined };
      const daemon = await startDaemon({
        ...opts,
        http,
        listen: opts.listen || DEFAULT_LISTEN,
        modelPath,
        keepAliveMs: opts.keepAlive,
        dataDir: opts.ephemeral ? undefined : opts.dataDir,
        // Tokens outlive --ephemeral: they are the daemon's configuration, not its sessions.
        tokensFile: path.join(opts.dataDir, "tokens.json"),
        tls: { cert: opts.tlsCert, key: opts.tlsKey, clientCa: opts.tlsClientCa },
        modelsDir: opts.modelsDir,
        maxSessions: env.maxSessions,
      });
      // The log is for people (stderr); scripts and tests wait for this line (see waitForReady).
      process.stdout.write(`${readyLine(daemon.address)}\n`);
      let stopping = false;
      const stop = (signal: NodeJS.Signals) => {
        if (stopping) {
          process.stderr.write(`${signal} again: exiting now, without waiting for running turns\n`);
          process.exit(128 + (signal === "SIGINT" ? 2 : 15));
        }
        stopping = true;
        process.stderr.write(`${signal}: draining (no new turns; running ones get up to ${opts.drainGrace} s), then exiting; send it again to exit now\n`);
        daemon.close(opts.drainGrace * 1000).then(
          () => process.exit(0),
          (err: Error) => {
            process.stderr.write(`shutdown failed: ${err.message}\n`);
            process.exit(1);
          },
        );
      };
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
    });
}

interface ServeFlags {
  model?: string;
  listen: string;
  http?: string;
  threads?: number;
  batchThreads?: number;
  parallel: number;
  ctx: number;
  gpu: (typeof GPUS)[number];
  kvCacheType: (typeof KV_TYPES)[number];
  mmproj?: string;
  dataDir: string;
  ephemeral?: boolean;
  store?: string;
  drainGrace: number;
  maxQueue: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  insecure?: boolean;
  metrics?: string;
  advertise?: boolean;
  logText?: boolean;
  modelsDir: string;
  memoryBudget?: number;
  keepAlive: number;
}

/** A commander parser from a parser that throws NanoError. */
function asArg<T>(parse: (value: string) => T) {
  return (value: string): T => {
    try {
      return parse(value);
    } catch (err) {
      throw new InvalidArgumentError(err instanceof NanoError ? err.message : String(err));
    }
  };
}
