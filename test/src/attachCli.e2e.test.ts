import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import type { ChatEvent } from "@nanollm/shared";
import { CLI, nanollm, spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";

/** Longer than the test waits: it is cancelled once the CLI under test has joined. */
const LONG = { maxNewTokens: 7000, minNewTokens: 7000 };

describe("nanollm chat --session on a session that is generating", () => {
  let d: TestDaemon;
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "8192", "--parallel", "1"]);
  });
  after(() => d.stop());

  /** Starts a long turn and resolves once its first text arrived; `done` resolves with its events; `stop` cancels it. */
  async function longTurn(sessionId: string) {
    const events: ChatEvent[] = [];
    let firstText: () => void = () => {};
    const started = new Promise<void>((r) => (firstText = r));
    const abort = new AbortController();
    const done = (async () => {
      for await (const e of d.client.turn(sessionId, "Tell a long story", LONG, abort.signal)) {
        events.push(e);
        if (e.kind?.$case === "text") firstText();
      }
      return events;
    })();
    await started;
    return { done, stop: () => abort.abort() };
  }

  /** The CLI with these arguments; `output` resolves once its stderr matches. */
  function cli(args: string[]) {
    const proc = spawn(process.execPath, [CLI, "chat", "--host", d.address, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const out = { stdout: "", stderr: "" };
    proc.stdout.on("data", (c: Buffer) => (out.stdout += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (out.stderr += c.toString()));
    const stderrMatches = async (re: RegExp) => {
      while (!re.test(out.stderr)) await once(proc.stderr, "data");
    };
    const exit = once(proc, "close").then(([code]) => code as number | null);
    return { proc, out, stderrMatches, exit };
  }

  it("--watch shows the reply so far and streams the rest, then the turns other clients send, until Ctrl+C", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const { done, stop } = await longTurn(s.sessionId);
    const watch = cli(["--session", s.sessionId.slice(0, 8), "--watch"]);
    await once(watch.proc.stdout, "data");
    // It joined mid-reply; the reply ends now, cut by its sender.
    stop();
    const events = await done;
    const end = events.at(-1)?.kind;
    assert.equal(end?.$case, "end");
    const reply = end?.$case === "end" ? end.end.reply : "";
    assert.equal((await d.client.getSession(s.sessionId, true)).history.length, 2);
    const next = await turn(d.client, s.sessionId, "And then?", 8);
    const expected = `> Tell a long story\n${reply}\n> And then?\n${next.text}\n`;
    for (let i = 0; i < 500 && watch.out.stdout.length < expected.length; i++) await new Promise((r) => setTimeout(r, 10));
    watch.proc.kill("SIGINT");
    assert.equal(await watch.exit, 0, watch.out.stderr);
    assert.ok(events.filter((e) => e.kind?.$case === "text").length > 1, "the reply streamed in several events");
    assert.equal(watch.out.stdout, expected, "the whole running reply (not only what came after the watch started), then the next turn");
    assert.match(watch.out.stderr, /^watching session .*Ctrl\+C stops\n/);
    assert.match(watch.out.stderr, /stop: cancelled\]\n.*stop: max new tokens\]\n$/s);
  });

  it("--prompt on a busy session waits for the running turn and runs after it; --no-wait fails in one sentence", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const { done, stop } = await longTurn(s.sessionId);
    const refused = await nanollm(["chat", "--host", d.address, "--session", s.sessionId, "--prompt", "Me too", "--max-new-tokens", "4", "--no-wait"]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /^nanollm: Session \S+ already has a turn running; send again when it ends, or without --no-wait to queue behind it\.\n$/m);
    const queued = cli(["--session", s.sessionId, "--prompt", "Me too", "--max-new-tokens", "4"]);
    await queued.stderrMatches(/another turn is running on this session: this one waits for it/);
    assert.equal((await d.client.getSession(s.sessionId)).busy, true);
    stop();
    await done;
    assert.equal(await queued.exit, 0, queued.out.stderr);
    const history = (await d.client.getSession(s.sessionId, true)).history;
    assert.deepEqual(
      history.map((m) => m.text).filter((_, i) => i % 2 === 0),
      ["Tell a long story", "Me too"],
      "the waiting turn ran after the running one",
    );
    assert.equal(queued.out.stdout, `${history[3]!.text}\n`);
  });
});
