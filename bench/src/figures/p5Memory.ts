// P5: memory. Resident memory beyond the model file and the KV cache (what the process itself
// costs), and KV bytes per session, at f16 and q8_0 KV, ours vs llama-server with the same slots.
import { LlamaServer } from "../LlamaServer.js";
import { OurDaemon } from "../OurDaemon.js";
import { compare, type Row } from "../report.js";
import { words } from "../text.js";
import type { Figure, FigureContext } from "./context.js";

const PARALLEL = 8;
const CTX = 2048;
const MB = 1e6;

interface Mem {
  rss: number;
  kv: number;
  overhead: number;
  kvPerSession: number;
}

export const p5Memory: Figure = async (ctx) => {
  const rows: Row[] = [];
  const raw: Record<string, { ours?: Mem; peer?: Mem; errors: string[] }> = {};
  for (const kvCacheType of ["f16", "q8_0"] as const) {
    const entry: { ours?: Mem; peer?: Mem; errors: string[] } = { errors: [] };
    raw[kvCacheType] = entry;
    // A model the KV type does not fit (q8_0 needs head sizes divisible by 32) fails on either side.
    entry.ours = await oursMem(ctx, kvCacheType).catch((err: unknown) => void entry.errors.push(`ours: ${firstLine(err)}`));
    entry.peer = await peerMem(ctx, kvCacheType).catch((err: unknown) => void entry.errors.push(`llama-server: ${lastError(err)}`));
    ctx.log(`P5 ${kvCacheType}: ours ${show(entry.ours)}; llama-server ${show(entry.peer)}`);
    const note = entry.errors.join("; ") || undefined;
    rows.push(compare("P5", `RSS − model − KV, ${kvCacheType} KV`, "MB", mb(entry.ours?.overhead), mb(entry.peer?.overhead), "llama-server",
      { op: "<=", value: 150, on: "ours" }, note));
    rows.push(compare("P5", `KV per session, ${kvCacheType}, ${CTX} ctx`, "MB", mb(entry.ours?.kvPerSession), mb(entry.peer?.kvPerSession), "llama-server", null));
  }
  return { rows, raw: { parallel: PARALLEL, ctx: CTX, ...raw } };
};

async function oursMem(ctx: FigureContext, kvCacheType: "f16" | "q8_0"): Promise<Mem> {
  const d = await OurDaemon.start({ model: ctx.model, threads: ctx.threads, parallel: PARALLEL, ctx: CTX, kvCacheType });
  try {
    await d.turn(await d.session("raw"), words(32, 5), 16);
    const m = await d.model();
    const rss = d.rssBytes() ?? NaN;
    return { rss, kv: m.kvCacheBytes, overhead: rss - m.sizeBytes - m.kvCacheBytes, kvPerSession: m.kvCacheBytes / m.sequences };
  } finally {
    await d.stop();
  }
}

async function peerMem(ctx: FigureContext, kvCacheType: "f16" | "q8_0"): Promise<Mem> {
  const s = await LlamaServer.start({ model: ctx.model, threads: ctx.threads, parallel: PARALLEL, ctx: CTX, kvCacheType, logKv: true });
  try {
    await s.complete({ prompt: words(32, 5), nPredict: 16, cachePrompt: false });
    const rss = s.rssBytes() ?? NaN;
    const kv = s.kvBytes ?? NaN;
    return { rss, kv, overhead: rss - ctx.modelBytes - kv, kvPerSession: kv / PARALLEL };
  } finally {
    await s.stop();
  }
}

function mb(x: number | undefined): number | null {
  return x === undefined || !Number.isFinite(x) ? null : x / MB;
}

function show(m: Mem | undefined): string {
  return m ? `RSS ${(m.rss / MB).toFixed(0)} MB, KV ${(m.kv / MB).toFixed(0)} MB, rest ${(m.overhead / MB).toFixed(0)} MB` : "n/a";
}

/** llama-server's own reason (its first error line), else the first line of the message. */
function lastError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.match(/ E (?:llama_init_from_model|[^\n]*?load_model): ([^\n]+)/)?.[1] ?? firstLine(err);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0] ?? "";
}
