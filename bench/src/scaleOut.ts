// Scale-out figure (issue 17): aggregate decode of 3 daemons behind nginx ÷ 3 × one daemon behind the
// same nginx. `node bench/dist/scaleOut.js [--model big|tiny] [--sessions 4] [--tokens 64] [--reps 3]`.
// Each daemon runs 1 thread (`--threads 1 --batch-threads 1`); the figure is only meaningful where the
// machine has a core per daemon (and one for nginx and the clients): on fewer cores it measures the
// cores, and the script prints how many there were beside the ratio.
import os from "node:os";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { ensureBalancer, startBalancer, type RunningBalancer } from "@nanollm/test/dist/helpers/balancers.js";
import { benchModel, type ModelName } from "./models.js";
import { OurDaemon } from "./OurDaemon.js";
import { median, writeResults } from "./report.js";
import { words } from "./text.js";

const DAEMONS = 3;

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

/**
 * `perDaemon` sessions on each of `daemons`, created through the balancer: the hash places random
 * ids unevenly (5/3/4 of 12), which would measure luck, so ids are drawn until each daemon holds its
 * share (asked of the daemons directly) and the extra sessions are deleted.
 */
async function balancedSessions(lb: NanoClient, daemons: OurDaemon[], perDaemon: number): Promise<string[]> {
  const kept: string[] = [];
  const counts = daemons.map(() => 0);
  while (counts.some((n) => n < perDaemon)) {
    const id = (await lb.createSession({ chatTemplate: "raw" })).sessionId;
    const home = await homeOf(daemons, id);
    if ((counts[home] ?? perDaemon) < perDaemon) {
      counts[home] = (counts[home] ?? 0) + 1;
      kept.push(id);
    } else await lb.deleteSession(id);
  }
  return kept;
}

async function homeOf(daemons: OurDaemon[], id: string): Promise<number> {
  for (let i = 0; i < daemons.length; i++) {
    if (await daemons[i]?.client.getSession(id).then(() => true, () => false)) return i;
  }
  throw new Error(`session ${id} is on none of the daemons`);
}

/** Every session generates `tokens` greedy tokens at once through the balancer: total tokens ÷ wall seconds. */
async function aggregateDecode(lb: NanoClient, ids: string[], tokens: number, seed: number): Promise<number> {
  const params = { maxNewTokens: tokens, minNewTokens: tokens, doSample: false, temperature: 0 };
  const started = performance.now();
  const generated = await Promise.all(
    ids.map(async (id, i) => {
      for await (const ev of lb.turn(id, words(16, seed * 100 + i), params)) if (ev.kind?.$case === "end") return ev.kind.end.stats?.generatedTokens ?? 0;
      throw new Error("the turn ended without a TurnEnd");
    }),
  );
  return generated.reduce((a, b) => a + b, 0) / ((performance.now() - started) / 1000);
}

async function measure(kind: "one" | "all", daemons: OurDaemon[], binary: string, perDaemon: number, tokens: number, reps: number): Promise<number[]> {
  const behind = kind === "one" ? daemons.slice(0, 1) : daemons;
  const lb: RunningBalancer = await startBalancer("nginx", binary, behind.map((d) => ({ grpcPort: Number(d.client.host.split(":").at(-1)), httpPort: 1 })));
  const client = new NanoClient(lb.address);
  try {
    const ids = await balancedSessions(client, behind, perDaemon);
    await aggregateDecode(client, ids, 4, 0); // warm-up: every sequence has run once
    const tps: number[] = [];
    for (let rep = 0; rep < reps; rep++) tps.push(await aggregateDecode(client, ids, tokens, rep + 1));
    await Promise.all(ids.map((id) => client.deleteSession(id)));
    return tps;
  } finally {
    client.close();
    await lb.stop();
  }
}

async function main(): Promise<void> {
  const modelName = flag("model", "big") as ModelName;
  const perDaemon = Number(flag("sessions", "4"));
  const tokens = Number(flag("tokens", "64"));
  const reps = Number(flag("reps", "3"));
  const found = ensureBalancer("nginx");
  if ("why" in found) throw new Error(found.why);
  const model = benchModel(modelName);
  const daemons: OurDaemon[] = [];
  try {
    for (let i = 0; i < DAEMONS; i++) daemons.push(await OurDaemon.start({ model, threads: 1, parallel: perDaemon, ctx: 512 }));
    // One daemon, then all three, each behind nginx; the idle daemons cost nothing meanwhile.
    const one = await measure("one", daemons, found.binary, perDaemon, tokens, reps);
    const all = await measure("all", daemons, found.binary, perDaemon, tokens, reps);
    const ratio = median(all) / (DAEMONS * median(one));
    const cores = os.cpus().length;
    const lines = [
      `scale-out, model ${modelName}, ${perDaemon} sessions per daemon × ${tokens} tokens, 1 thread per daemon, ${cores} cores, nginx in the path`,
      `  one daemon:    ${median(one).toFixed(1)} tok/s (reps ${one.map((x) => x.toFixed(1)).join(", ")})`,
      `  ${DAEMONS} daemons:     ${median(all).toFixed(1)} tok/s (reps ${all.map((x) => x.toFixed(1)).join(", ")})`,
      `  ${DAEMONS} daemons ÷ (${DAEMONS} × one) = ${ratio.toFixed(2)} (goal ≥ 0.9; a compute-bound load can reach at most ${Math.min(1, cores / DAEMONS).toFixed(2)} with ${DAEMONS} one-thread daemons on ${cores} cores)`,
    ];
    console.log(lines.join("\n"));
    const file = writeResults({ figure: "scale-out", model: modelName, perDaemon, tokens, reps, cores, loadavg: os.loadavg(), one, all, ratio });
    console.log(`results: ${file}`);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
