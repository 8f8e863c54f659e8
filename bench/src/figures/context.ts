// What every figure gets, and the helper that runs ours and the peer side by side.
import { LlamaServer, type PeerOptions } from "../LlamaServer.js";
import { OurDaemon, type ServeOptions } from "../OurDaemon.js";
import type { Row } from "../report.js";

export interface FigureContext {
  model: string;
  modelBytes: number;
  threads: number;
  /** Fewer repetitions and turns: a smoke run of the harness, not numbers to quote. */
  quick: boolean;
  log(line: string): void;
}

export interface FigureResult {
  rows: Row[];
  raw: unknown;
}

export type Figure = (ctx: FigureContext) => Promise<FigureResult>;

/**
 * Starts our daemon and llama-server with the same model, threads, slots and context, runs `body`
 * with both alive (each idles while the other works, so they can be interleaved), stops both.
 */
export async function withBoth<T>(
  ctx: FigureContext,
  opts: { parallel: number; ctx: number; kvCacheType?: "f16" | "q8_0"; slotSavePath?: string; http?: boolean; mmproj?: string },
  body: (ours: OurDaemon, peer: LlamaServer) => Promise<T>,
): Promise<T> {
  const serve: ServeOptions = { model: ctx.model, threads: ctx.threads, parallel: opts.parallel, ctx: opts.ctx, kvCacheType: opts.kvCacheType, http: opts.http, mmproj: opts.mmproj };
  const peerOpts: PeerOptions = { ...serve, threads: ctx.threads, slotSavePath: opts.slotSavePath };
  const ours = await OurDaemon.start(serve);
  let peer: LlamaServer | undefined;
  try {
    peer = await LlamaServer.start(peerOpts);
    return await body(ours, peer);
  } finally {
    await Promise.all([ours.stop(), peer?.stop()]);
  }
}
