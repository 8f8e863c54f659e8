// Every environment variable nanollm reads, with its default, lives in this file.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NanoError } from "./errors.js";

/** Default daemon port (documented in the README). */
export const DEFAULT_PORT = 7433;
export const DEFAULT_LISTEN = `127.0.0.1:${DEFAULT_PORT}`;
/** Default port of the OpenAI- and Ollama-compatible HTTP APIs (documented in the README). */
export const DEFAULT_HTTP_PORT = 7434;
export const DEFAULT_HTTP = `127.0.0.1:${DEFAULT_HTTP_PORT}`;

/**
 * The model fetched when none is given: a ~0.8 GB Q4 instruct model that chats and calls tools
 * well for its size. Overridden by --model or NANOLLM_MODEL.
 */
export const DEFAULT_MODEL_URI = "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M";

export interface EnvConfig {
  /** NANOLLM_MODEL: model path or hf: URI for `serve` (default: DEFAULT_MODEL_URI). */
  model: string | undefined;
  /** NANOLLM_LISTEN: address `serve` binds (default 127.0.0.1:7433). */
  listen: string;
  /**
   * NANOLLM_HTTP: address of the OpenAI- and Ollama-compatible HTTP APIs, or "off" (default
   * 127.0.0.1:7434; off loopback only with --insecure: the HTTP APIs have no TLS).
   */
  http: string | undefined;
  /** NANOLLM_HOST: address `chat` and the admin commands connect to (default 127.0.0.1:7433). */
  host: string;
  /**
   * NANOLLM_THREADS: compute threads for one-token decode steps (default: every core but one, left
   * to the event loop; see README "Threads").
   */
  threads: number | undefined;
  /**
   * NANOLLM_BATCH_THREADS: compute threads for batches of several tokens: prompt chunks, and decode
   * steps that carry several sessions (default: every core).
   */
  batchThreads: number | undefined;
  /** NANOLLM_PARALLEL: KV-cache sequences, i.e. sessions that hold a cache at once (default 4). */
  parallel: number;
  /** NANOLLM_CTX: context tokens per session (default 4096). */
  ctx: number;
  /** NANOLLM_GPU: auto | cpu | cuda | vulkan | metal (default auto). */
  gpu: string;
  /** NANOLLM_KV_CACHE_TYPE: f16 | q8_0 (default f16). */
  kvCacheType: string;
  /** NANOLLM_MMPROJ: the image projector of the model (default: an mmproj*.gguf beside it; "none" for none). */
  mmproj: string | undefined;
  /** NANOLLM_MODELS_DIR: where downloaded models are kept (default ~/.cache/nanollm/models). */
  modelsDir: string;
  /** NANOLLM_DATA_DIR: where sessions are journaled (default ~/.local/state/nanollm). */
  dataDir: string;
  /** NANOLLM_MAX_QUEUE: turns that may wait for a free KV-cache sequence (default 256). */
  maxQueue: number;
  /** NANOLLM_MAX_SESSIONS: sessions the daemon keeps (default 1024). */
  maxSessions: number;
  /** NANOLLM_TOKEN: the bearer token clients send (from `nanollm tokens add`; default none). */
  token: string | undefined;
  /** NANOLLM_TLS_CA: PEM file of the CA clients trust for the daemon's certificate (default: plaintext). */
  tlsCa: string | undefined;
  /** NANOLLM_TLS_CERT, NANOLLM_TLS_KEY: the client's certificate and key for mutual TLS (default none). */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /**
   * NANOLLM_CLIENT_CONFIG: a JSON file of client defaults {host, token, tlsCa, tlsCert, tlsKey},
   * below flags and environment variables (default $XDG_CONFIG_HOME/nanollm/client.json).
   */
  clientConfig: string;
  /**
   * NANOLLM_CONNECT_TIMEOUT_MS: how long `pull` (and `serve` fetching a model) waits for the
   * model's server to answer before it says it cannot reach it (default 15000).
   */
  connectTimeoutMs: number;
  /**
   * NANOLLM_MAX_SESSIONS_PER_OWNER: sessions one owner may keep (default: NANOLLM_MAX_SESSIONS).
   * Owners are token identities; clients without one are the one local owner.
   */
  maxSessionsPerOwner: number | undefined;
  /**
   * NANOLLM_WRITE_TIMEOUT_MS: how long a Chat stream may leave its events unread (its HTTP/2
   * window full) before its turns are cancelled and their KV sequences released (default 30000).
   */
  writeTimeoutMs: number;
  /** NANOLLM_MAX_CONNECTIONS: client connections served at once; more are refused RESOURCE_EXHAUSTED (default 256). */
  maxConnections: number;
  /** NANOLLM_MAX_STREAMS: concurrent calls per connection (HTTP/2 MAX_CONCURRENT_STREAMS, default 100). */
  maxStreams: number;
  /** NANOLLM_IDLE_TIMEOUT_MS: a connection with no call for this long is closed (default 300000). */
  idleTimeoutMs: number;
  /**
   * NANOLLM_STORE: postgres://USER@HOST:PORT/DB to keep sessions in PostgreSQL, shared by every
   * daemon that names it (default: none, sessions are files under the data folder).
   */
  store: string | undefined;
  /**
   * NANOLLM_LEASE_TTL_MS: how long a session's lease in the shared store lasts unrenewed (renewed
   * every third of it while a turn runs); a dead daemon's sessions are taken over after it (default 15000).
   */
  leaseTtlMs: number;
  /** NANOLLM_STORE_RETRY_MS: how long a request retries while the shared store is unreachable, before UNAVAILABLE (default 10000). */
  storeRetryMs: number;
  /** NANOLLM_DRAIN_GRACE: seconds running turns get to end after SIGTERM before they are cancelled (default 30). */
  drainGrace: number;
  /**
   * NANOLLM_MEMORY_BUDGET: bytes the loaded models may take together, e.g. 8G (default: the
   * machine's memory less a margin, see defaultMemoryBudget); past it, idle models are unloaded.
   */
  memoryBudget: string | undefined;
  /** NANOLLM_HF_ENDPOINT (or HF_ENDPOINT): the Hugging Face hub `pull` fetches hf: models from (default https://huggingface.co). */
  hfEndpoint: string;
  /** HF_TOKEN: a Hugging Face token, for gated models (default none). */
  hfToken: string | undefined;
  /** NANOLLM_KEEP_ALIVE: how long an idle model stays loaded: 5m, 30s; 0 unloads after each turn; -1 never (default 5m). */
  keepAlive: string;
  /**
   * NANOLLM_REPLAY_EVENTS: events of a session's finished turns kept for clients that reattach
   * (Attach with after_seq), besides the running turn's, which are kept whole (default 256).
   */
  replayEvents: number;
  /**
   * NANOLLM_WATCH_BEHIND_EVENTS: events a watcher may fall behind before it is dropped (default 128;
   * below NANOLLM_REPLAY_EVENTS, so a dropped watcher can attach again after its last seq).
   */
  watchBehindEvents: number;
  /**
   * NANOLLM_RESUME_GRACE_MS: how long a resumable turn whose client dropped goes on with nobody
   * watching the session, waiting for the client to reattach, before it is cancelled (default 30000).
   */
  resumeGraceMs: number;
}

/** Reads the environment once; flags override these values. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): EnvConfig {
  const cacheHome = env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache");
  return {
    model: env.NANOLLM_MODEL || undefined,
    listen: env.NANOLLM_LISTEN || DEFAULT_LISTEN,
    http: env.NANOLLM_HTTP || undefined,
    host: env.NANOLLM_HOST || DEFAULT_LISTEN,
    threads: positiveInt(env.NANOLLM_THREADS),
    batchThreads: positiveInt(env.NANOLLM_BATCH_THREADS),
    parallel: positiveInt(env.NANOLLM_PARALLEL) ?? 4,
    ctx: positiveInt(env.NANOLLM_CTX) ?? 4096,
    gpu: env.NANOLLM_GPU || "auto",
    kvCacheType: env.NANOLLM_KV_CACHE_TYPE || "f16",
    mmproj: env.NANOLLM_MMPROJ || undefined,
    modelsDir: env.NANOLLM_MODELS_DIR || path.join(cacheHome, "nanollm", "models"),
    dataDir: env.NANOLLM_DATA_DIR || path.join(env.XDG_STATE_HOME ?? path.join(os.homedir(), ".local", "state"), "nanollm"),
    maxQueue: positiveInt(env.NANOLLM_MAX_QUEUE) ?? 256,
    maxSessions: positiveInt(env.NANOLLM_MAX_SESSIONS) ?? 1024,
    token: env.NANOLLM_TOKEN || undefined,
    tlsCa: env.NANOLLM_TLS_CA || undefined,
    tlsCert: env.NANOLLM_TLS_CERT || undefined,
    tlsKey: env.NANOLLM_TLS_KEY || undefined,
    clientConfig: env.NANOLLM_CLIENT_CONFIG || path.join(env.XDG_CONFIG_HOME ?? path.join(os.homedir(), ".config"), "nanollm", "client.json"),
    connectTimeoutMs: positiveInt(env.NANOLLM_CONNECT_TIMEOUT_MS) ?? 15_000,
    maxSessionsPerOwner: positiveInt(env.NANOLLM_MAX_SESSIONS_PER_OWNER),
    writeTimeoutMs: positiveInt(env.NANOLLM_WRITE_TIMEOUT_MS) ?? 30_000,
    maxConnections: positiveInt(env.NANOLLM_MAX_CONNECTIONS) ?? 256,
    maxStreams: positiveInt(env.NANOLLM_MAX_STREAMS) ?? 100,
    idleTimeoutMs: positiveInt(env.NANOLLM_IDLE_TIMEOUT_MS) ?? 300_000,
    store: env.NANOLLM_STORE || undefined,
    leaseTtlMs: positiveInt(env.NANOLLM_LEASE_TTL_MS) ?? 15_000,
    storeRetryMs: positiveInt(env.NANOLLM_STORE_RETRY_MS) ?? 10_000,
    drainGrace: nonNegativeNumber(env.NANOLLM_DRAIN_GRACE) ?? 30,
    memoryBudget: env.NANOLLM_MEMORY_BUDGET || undefined,
    keepAlive: env.NANOLLM_KEEP_ALIVE || "5m",
    hfEndpoint: env.NANOLLM_HF_ENDPOINT || env.HF_ENDPOINT || "https://huggingface.co",
    hfToken: env.HF_TOKEN || undefined,
    replayEvents: positiveInt(env.NANOLLM_REPLAY_EVENTS) ?? 256,
    watchBehindEvents: positiveInt(env.NANOLLM_WATCH_BEHIND_EVENTS) ?? 128,
    resumeGraceMs: positiveInt(env.NANOLLM_RESUME_GRACE_MS) ?? 30_000,
  };
}

/**
 * The memory budget when none is given: the machine's memory less what the system and other
 * programs need (a quarter of it, at most 4 GiB).
 */
export function defaultMemoryBudget(total = os.totalmem()): number {
  return total - Math.min(total / 4, 4 * 2 ** 30);
}

/** What a client config file may set; relative paths in it are relative to the file. */
export interface ClientFile {
  host?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** Reads the client config file; absent means {}; a token in a file others can read is refused. */
export function readClientFile(file: string): ClientFile {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return {};
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
  } catch (err) {
    throw new NanoError("INVALID_ARGUMENT", `${file} is not valid JSON (${(err as Error).message}); fix it or remove it.`);
  }
  const out: ClientFile = {};
  for (const key of ["host", "token", "tlsCa", "tlsCert", "tlsKey"] as const) {
    const value = parsed[key];
    if (value === undefined) continue;
    if (typeof value !== "string") throw new NanoError("INVALID_ARGUMENT", `"${key}" in ${file} must be a string.`);
    out[key] = key.startsWith("tls") ? path.resolve(path.dirname(file), value) : value;
  }
  if (out.token && (fs.statSync(file).mode & 0o077) !== 0) throw new NanoError("FAILED_PRECONDITION", `${file} holds a token but others can read it; run \`chmod 600 ${file}\`.`);
  return out;
}

function positiveInt(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

function nonNegativeNumber(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}
