// llama.cpp's own benchmarks: what the engine does with nothing around it.
import path from "node:path";
import { PEER_BIN } from "./paths.js";
import { runToEnd } from "./proc.js";

/** llama-bench's single-stream decode speed (tg`n`), tokens per second. */
export async function llamaBenchTg(model: string, threads: number, n: number, reps: number): Promise<number> {
  const { out } = await runToEnd(path.join(PEER_BIN, "llama-bench"),
    ["-m", model, "-p", "0", "-n", String(n), "-t", String(threads), "-r", String(reps), "-o", "json"], 600_000);
  const rows = JSON.parse(out) as { n_gen: number; avg_ts: number }[];
  const row = rows.find((r) => r.n_gen === n);
  if (!row) throw new Error(`llama-bench printed no tg${n} row:\n${out.slice(0, 500)}`);
  return row.avg_ts;
}

export interface BatchedRow {
  pl: number;
  /** Aggregate decode speed over all `pl` sequences, tokens per second. */
  speedTg: number;
  speedPp: number;
}

/** llama-batched-bench at each parallelism in `pls`: `pp` prompt tokens and `tg` generated per sequence. */
export async function batchedBench(model: string, threads: number, pls: number[], pp: number, tg: number): Promise<BatchedRow[]> {
  const maxPl = Math.max(...pls);
  const ctx = maxPl * (pp + tg) + 64;
  const { out, err } = await runToEnd(path.join(PEER_BIN, "llama-batched-bench"),
    ["-m", model, "-c", String(ctx), "-b", "2048", "-ub", "512", "-npp", String(pp), "-ntg", String(tg),
      "-npl", pls.join(","), "-t", String(threads), "-tb", String(threads), "--output-format", "jsonl"], 600_000);
  const rows: BatchedRow[] = [];
  for (const line of `${out}\n${err}`.split("\n")) {
    if (!line.startsWith("{\"n_kv_max")) continue;
    const r = JSON.parse(line) as { pl: number; speed_tg: number; speed_pp: number };
    rows.push({ pl: r.pl, speedTg: r.speed_tg, speedPp: r.speed_pp });
  }
  return rows;
}

/** llama-mtmd-cli's own encode time for `image` ("image slice encoded in N ms"), each of `reps` runs. */
export async function mtmdCliEncodeMs(model: string, mmproj: string, image: string, threads: number, reps: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < reps; i++) {
    const { out: stdout, err } = await runToEnd(path.join(PEER_BIN, "llama-mtmd-cli"),
      ["-m", model, "--mmproj", mmproj, "--image", image, "-p", "What is in the picture?", "-n", "1", "--temp", "0", "-t", String(threads), "--no-mmproj-offload"], 600_000);
    const m = /(?:image slice encoded|mtmd batch encoding done) in (\d+) ms/.exec(`${stdout}\n${err}`);
    if (!m) throw new Error(`llama-mtmd-cli printed no encode time:\n${`${stdout}\n${err}`.slice(-800)}`);
    out.push(Number(m[1]));
  }
  return out;
}
