// `make bench`: generates the models, builds the peer once, runs each figure for us and the peer
// back to back, prints a table of ratios and writes JSON to bench/results/.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import type { Figure, FigureContext } from "./figures/context.js";
import { p1Decode } from "./figures/p1Decode.js";
import { p2Chat } from "./figures/p2Chat.js";
import { p3Concurrent } from "./figures/p3Concurrent.js";
import { p4Resume } from "./figures/p4Resume.js";
import { p5Memory } from "./figures/p5Memory.js";
import { p6OpenAi } from "./figures/p6OpenAi.js";
import { p7Image } from "./figures/p7Image.js";
import { p8Watchers } from "./figures/p8Watchers.js";
import { benchModel, type ModelName } from "./models.js";
import { CLI_MAIN, ROOT } from "./paths.js";
import { killAll, othersCpuShare } from "./proc.js";
import { formatTable, writeResults, type Row } from "./report.js";

const FIGURES: Record<string, Figure> = { P1: p1Decode, P2: p2Chat, P3: p3Concurrent, P4: p4Resume, P5: p5Memory, P6: p6OpenAi, P7: p7Image, P8: p8Watchers };
/** Figures that measure ours alone: they need no peer built. */
const OURS_ONLY = new Set(["P8"]);
const FIGURE_LIMIT_MS = 20 * 60_000;
const USAGE = "usage: node bench/dist/run.js [--threads 2[,1...]] [--figures P1,P2,P3,P4,P5,P6,P7,P8] [--model big|tiny] [--quick]";

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    threads: { type: "string", default: process.env.BENCH_THREADS ?? "2" },
    figures: { type: "string", default: process.env.BENCH_FIGURES ?? Object.keys(FIGURES).join(",") },
    model: { type: "string", default: process.env.BENCH_MODEL ?? "big" },
    quick: { type: "boolean", default: process.env.BENCH_QUICK === "1" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const threads = values.threads.split(",").map(Number);
if (threads.some((t) => !Number.isInteger(t) || t < 1)) fail(`--threads expects positive integers, got ${values.threads}. ${USAGE}`);
const figures = values.figures.toUpperCase().split(",");
const unknown = figures.filter((f) => !FIGURES[f]);
if (unknown.length) fail(`unknown figure ${unknown.join(", ")}; pick from ${Object.keys(FIGURES).join(", ")}.`);
if (values.model !== "big" && values.model !== "tiny") fail(`--model expects big or tiny, got ${values.model}.`);
if (!fs.existsSync(path.join(path.dirname(CLI_MAIN), "..", "dist", "main.js"))) fail("cli/dist/main.js is missing; run `make build` first.");

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
const started = performance.now();

// Both models are made (the tiny one is cheap and gives a quick smoke run with --model tiny).
const models = { big: benchModel("big"), tiny: benchModel("tiny") };
const model = models[values.model as ModelName];

if (figures.some((f) => !OURS_ONLY.has(f))) {
  const build = spawnSync(path.join(ROOT, "scripts", "build-peer.sh"), { stdio: "inherit" });
  if (build.status !== 0) fail("building the peer (scripts/build-peer.sh) failed; see its output above.");
}

const rows: Row[] = [];
const raw: Record<string, unknown> = {};
for (const t of threads) {
  const ctx: FigureContext = { model, modelBytes: fs.statSync(model).size, threads: t, quick: values.quick, log };
  for (const name of figures) {
    const figStart = performance.now();
    // Other work on the machine makes llama.cpp's threads wait on each other: say so next to the numbers.
    const others = await othersCpuShare();
    const busy = others !== undefined && others > 0.2 ? ` (other processes are using ${(others * 100).toFixed(0)}% of the ${os.availableParallelism()} cores)` : "";
    log(`${name} at ${t} thread${t > 1 ? "s" : ""} ...${busy}`);
    try {
      const res = await withLimit(FIGURES[name]!(ctx), FIGURE_LIMIT_MS, name);
      rows.push(...res.rows.map((r) => ({ ...r, measure: `${r.measure} [t=${t}]` })));
      raw[`${name}@t${t}`] = { ...(res.raw as object), seconds: (performance.now() - figStart) / 1000, othersCpuBefore: others, loadAfter: os.loadavg()[0] };
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      log(`${name} failed: ${msg}`);
      rows.push({ figure: name, measure: `failed [t=${t}]`, unit: "", ours: null, peer: null, against: "", ratio: null, goal: null, met: null, na: "error", note: msg.split("\n")[0] });
      raw[`${name}@t${t}`] = { error: msg };
    }
    log(`${name} took ${((performance.now() - figStart) / 1000).toFixed(0)} s`);
  }
}

const table = formatTable(rows);
const noise = Object.entries(raw).map(([k, v]) => {
  const share = (v as { othersCpuBefore?: number }).othersCpuBefore;
  return `${k} ${share === undefined ? "?" : `${(share * 100).toFixed(0)}%`}`;
});
process.stdout.write(`\nnanollm vs llama.cpp (${path.basename(model)}; ratios are ours ÷ peer; this machine is shared, so compare ratios, not absolutes)\n\n${table}\n\nCPU used by other processes just before each figure: ${noise.join(", ")}\n`);
const file = writeResults({ model: path.basename(model), threads, quick: values.quick, seconds: (performance.now() - started) / 1000, rows, raw, table });
process.stdout.write(`\nresults: ${path.relative(process.cwd(), file)} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
process.exit(0);

/** Rejects (and kills the children, so their pending calls fail too) if `p` takes longer than `ms`. */
function withLimit<T>(p: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      killAll();
      reject(new Error(`${name} did not finish within ${ms / 60_000} min`));
    }, ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
