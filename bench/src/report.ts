// Result rows (ours vs a peer, as a ratio against a goal), the printed table and the JSON file.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RESULTS_DIR } from "./paths.js";

export interface Goal {
  op: ">=" | "<=";
  value: number;
  /** What the goal applies to: the ratio (default) or our own value alone. */
  on?: "ratio" | "ours";
}

export interface Row {
  figure: string;
  measure: string;
  unit: string;
  ours: number | null;
  peer: number | null;
  /** What `peer` was measured with (llama-server, llama-bench, ...). */
  against: string;
  /** ours ÷ peer, unless the row says otherwise in its measure. */
  ratio: number | null;
  goal: Goal | null;
  met: boolean | null;
  /** Shown instead of the ratio when there is nothing of ours to measure, e.g. "n/a (not implemented)". */
  na?: string;
  note?: string;
}

/** A row comparing `ours` with `peer` as ours ÷ peer against `goal` (null goal: for contrast only). */
export function compare(figure: string, measure: string, unit: string, ours: number | null, peer: number | null,
  against: string, goal: Goal | null, note?: string): Row {
  const ratio = ours !== null && peer !== null && peer > 0 ? ours / peer : null;
  const x = goal?.on === "ours" ? ours : ratio;
  const met = goal === null || x === null ? null : goal.op === ">=" ? x >= goal.value : x <= goal.value;
  return { figure, measure, unit, ours, peer, against, ratio, goal, met, ...(note ? { note } : {}) };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function num(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return "n/a";
  const a = Math.abs(x);
  return a >= 1000 ? x.toFixed(0) : a >= 100 ? x.toFixed(1) : a >= 1 ? x.toFixed(2) : x.toFixed(3);
}

/** The table as plain text, one row a line, columns padded. */
export function formatTable(rows: readonly Row[]): string {
  const head = ["fig", "measure", "unit", "ours", "peer", "against", "ratio", "goal", "met"];
  const body = rows.map((r) => [r.figure, r.measure, r.unit, num(r.ours), num(r.peer), r.against,
    r.na ?? num(r.ratio), r.goal ? `${r.goal.on === "ours" ? "ours " : ""}${r.goal.op} ${r.goal.value}` : "-", r.met === null ? "-" : r.met ? "yes" : "NO"]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  const notes = rows.filter((r) => r.note).map((r) => `  ${r.figure} ${r.measure}: ${r.note}`);
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line), ...(notes.length ? ["notes:", ...notes] : [])].join("\n");
}

/** Writes the run to bench/results/<timestamp>.json and returns its path. */
export function writeResults(run: Record<string, unknown>): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", memBytes: os.totalmem(), node: process.version, loadavg: os.loadavg() };
  fs.writeFileSync(file, JSON.stringify({ machine, ...run }, null, 2) + "\n");
  return file;
}
