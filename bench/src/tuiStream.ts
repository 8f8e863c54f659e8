// Does the chat screen keep up with the daemon? While the daemon streams 1,000 tokens, compare the
// tokens per second the screen shows with the tokens per second that arrive from the daemon.
//   node bench/dist/tuiStream.js [MODEL.gguf] [--runs N] [--tokens N]
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { render } from "ink";
import { waitForReady, type ChatEvent } from "@nanollm/shared";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import type { ChatClient } from "nanollm/dist/ui/ChatClient.js";
import { createChat } from "nanollm/dist/ui/createChat.js";
import { RecordingStdout, SilentStdin } from "./tuiScreen.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const GOAL = 0.95;

interface Run {
  tokens: number;
  /** Tokens per second arriving from the daemon, first token to last. */
  sentTokPerS: number;
  /** Tokens per second on screen, from the first token's arrival to the frame showing all of them. */
  shownTokPerS: number;
  ratio: number;
  /** How long after the last token arrived the screen showed it. */
  lastTokenLagMs: number;
  /** How long after the last token the turn's end event arrived (the daemon's part of that lag). */
  endEventAfterMs: number;
  daemonDecodeTokPerS: number;
  frames: number;
  bytesWritten: number;
}

function args() {
  const argv = process.argv.slice(2);
  const flag = (name: string, def: number) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv.splice(i, 2)[1]) : def;
  };
  const runs = flag("--runs", 5);
  const tokens = flag("--tokens", 1000);
  const model = argv[0] ?? path.join(ROOT, "test/fixtures/models/tiny-chatml.gguf");
  if (!fs.existsSync(model)) {
    process.stderr.write(`tuiStream: ${model} does not exist; run \`make fixtures\` or pass a .gguf path.\n`);
    process.exit(1);
  }
  return { runs, tokens, model };
}

/** `nanollm serve` on a free port, one thread; resolves with its address and a stop function. */
async function startDaemon(model: string, ctx: number) {
  const proc = spawn(process.execPath, [path.join(ROOT, "cli/bin/nanollm.js"), "serve", "--model", model, "--listen", "127.0.0.1:0", "--threads", "1", "--batch-threads", "1", "--gpu", "cpu", "--ctx", String(ctx), "--parallel", "1"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  process.on("exit", () => proc.kill("SIGKILL"));
  const { address } = await waitForReady(proc);
  return { address, stop: () => proc.kill("SIGTERM") };
}

/** The client with a tap on each turn: when every text event arrived, and how many tokens it held. */
function tapped(client: NanoClient, arrivals: { t: number; tokens: number; end?: boolean }[]): ChatClient {
  return {
    host: client.host,
    createSession: (r) => client.createSession(r),
    getSession: (id, h) => client.getSession(id, h),
    listSessions: () => client.listSessions(),
    resetSession: (id) => client.resetSession(id),
    updateSession: (id, c) => client.updateSession(id, c),
    truncateSession: (id, k) => client.truncateSession(id, k),
    deleteSession: (id) => client.deleteSession(id),
    listTemplates: () => client.listTemplates(),
    listLocalModels: () => client.listLocalModels(),
    async *turn(...a: Parameters<NanoClient["turn"]>): AsyncGenerator<ChatEvent> {
      for await (const ev of client.turn(...a)) {
        if (ev.kind?.$case === "text") arrivals.push({ t: performance.now(), tokens: ev.kind.text.tokenIds.length });
        if (ev.kind?.$case === "end") arrivals.push({ t: performance.now(), tokens: 0, end: true });
        yield ev;
      }
    },
  };
}

async function oneRun(client: NanoClient, tokens: number): Promise<Run> {
  const arrivals: { t: number; tokens: number; end?: boolean }[] = [];
  const session = await client.createSession({ chatTemplate: "chat-ml", defaults: { maxNewTokens: tokens, minNewTokens: tokens } });
  const stdout = new RecordingStdout();
  const chat = createChat({ client: tapped(client, arrivals), session, params: {}, historyFile: undefined, onQuit: () => {} });
  const app = render(chat.element, { stdout: stdout as unknown as NodeJS.WriteStream, stdin: new SilentStdin() as unknown as NodeJS.ReadStream, exitOnCtrlC: false, patchConsole: false });
  await new Promise((r) => setTimeout(r, 200));
  const start = stdout.frames.length;
  await chat.controller.sendTurn("Tell me a long story about a dragon.");
  await new Promise((r) => setTimeout(r, 200)); // the last frame may still be on its way
  const stats = chat.store.getState().lastStats;
  app.unmount();
  await client.deleteSession(session.sessionId).catch(() => undefined);

  const end = arrivals.find((a) => a.end);
  const texts = arrivals.filter((a) => !a.end);
  const total = texts.reduce((n, a) => n + a.tokens, 0);
  const first = texts[0]!.t;
  const last = texts[texts.length - 1]!.t;
  // The screen shows every token once the status line counts them all, or the finished turn.
  const frames = stdout.frames.slice(start);
  const all = frames.find((f) => f.t >= last && (f.text.includes(`streaming ${total} tokens`) || /decode [\d.]+ tok\/s/.test(f.text)));
  if (!all) throw new Error("no frame showed the whole reply");
  const sent = ((total - texts[0]!.tokens) * 1000) / (last - first);
  const shown = ((total - texts[0]!.tokens) * 1000) / (all.t - first);
  return {
    tokens: total,
    sentTokPerS: sent,
    shownTokPerS: shown,
    ratio: shown / sent,
    lastTokenLagMs: all.t - last,
    endEventAfterMs: end ? end.t - last : NaN,
    daemonDecodeTokPerS: stats?.decodeTokensPerSecond ?? 0,
    frames: frames.length,
    bytesWritten: frames.reduce((n, f) => n + f.bytes, 0),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  const { runs, tokens, model } = args();
  const daemon = await startDaemon(model, Math.max(4096, tokens + 512));
  const client = new NanoClient(daemon.address);
  const results: Run[] = [];
  try {
    await oneRun(client, 50); // warm-up: model pages, JIT, the Markdown renderer
    for (let i = 0; i < runs; i++) {
      const r = await oneRun(client, tokens);
      results.push(r);
      console.log(
        `run ${i + 1}: ${r.tokens} tokens · daemon sent ${r.sentTokPerS.toFixed(0)} tok/s · screen showed ${r.shownTokPerS.toFixed(0)} tok/s · ` +
          `ratio ${r.ratio.toFixed(3)} · last token on screen ${r.lastTokenLagMs.toFixed(0)} ms after it arrived (end event: ${r.endEventAfterMs.toFixed(0)} ms) · ${r.frames} writes`,
      );
    }
  } finally {
    client.close();
    daemon.stop();
  }
  const ratio = median(results.map((r) => r.ratio));
  const verdict = ratio >= GOAL ? "meets" : "misses";
  console.log(`tuiStream: shown/sent ratio ${ratio.toFixed(3)} (median of ${runs}) ${verdict} the goal of ${GOAL}`);
  const dir = path.join(ROOT, "bench/results");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `tuiStream-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const cpus = os.cpus();
  fs.writeFileSync(file, JSON.stringify({ bench: "tuiStream", date: new Date().toISOString(), model, tokens, goal: GOAL, ratio, meetsGoal: ratio >= GOAL, machine: { cpus: cpus.length, cpu: cpus[0]?.model, node: process.version, loadavg: os.loadavg() }, runs: results }, null, 2) + "\n");
  console.log(`wrote ${path.relative(ROOT, file)}`);
}

await main();
