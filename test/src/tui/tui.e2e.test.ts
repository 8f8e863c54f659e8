import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Role, type SessionInfo } from "@nanollm/shared";
import { CLI, spawnDaemon, type TestDaemon } from "../helpers/daemon.js";
import { tempDir, tinyModel } from "../helpers/fixtures.js";
import { haveTmux, TmuxScreen } from "./tmux.js";

/** Letters and digits only: Markdown rendering and line wrapping may change everything else. */
const squash = (s: string) => s.replace(/[^A-Za-z0-9]/g, "");

describe("nanollm chat in a terminal (tmux, real daemon)", { skip: haveTmux() ? false : "tmux is not installed" }, () => {
  let d: TestDaemon;
  let tui: TmuxScreen;
  let stateDir: string;
  let sessionId = "";

  const session = async (): Promise<SessionInfo> => {
    if (!sessionId) {
      const short = (await tui.waitFor(/session ([0-9a-f]{8})/, "the status line"))[1]!;
      sessionId = (await d.client.listSessions()).find((s) => s.sessionId.startsWith(short))!.sessionId;
    }
    return d.client.getSession(sessionId, true);
  };
  const bot = (s: SessionInfo) => s.history.filter((m) => m.role === Role.ROLE_BOT).map((m) => m.text);

  before(async () => {
    // The model's whole trained context (the daemon clamps --ctx to it), so a reply runs until stopped by hand.
    d = await spawnDaemon(tinyModel(), ["--ctx", "4096", "--parallel", "2"]);
    stateDir = tempDir("tui-e2e");
    tui = new TmuxScreen([process.execPath, CLI, "chat", "--host", d.address, "--chat-template", "chat-ml", "--max-new-tokens", "40"], {
      env: { XDG_STATE_HOME: stateDir },
    });
  });
  after(async () => {
    tui?.kill();
    await d?.stop();
  });

  it("starts with the status line: host, model, template, session, context", async () => {
    const status = await tui.waitFor(/127\.0\.0\.1:\d+ · tiny-chatml · chat-ml · session [0-9a-f]{8} · ctx \d+\/4096/, "the status line");
    assert.ok(status);
  });

  it("sends a typed prompt and shows the reply the daemon kept", async () => {
    tui.keys("Hello there", "Enter");
    await tui.waitFor(/reply cut at 40 tokens/, "the first reply");
    tui.keys("Second question", "Enter");
    await tui.waitFor(/› Second question[\s\S]*reply cut at 40 tokens/, "the second reply");
    const s = await session();
    assert.equal(s.history.length, 4);
    const screen = squash(tui.screen());
    for (const reply of bot(s)) assert.ok(screen.includes(squash(reply)), `the screen shows the reply ${JSON.stringify(reply)}`);
    await tui.waitFor(/prefill \d+ tok\/s · decode [\d.]+ tok\/s/, "the last turn's speeds");
  });

  it("/undo drops the last exchange on the daemon", async () => {
    tui.text("/undo");
    tui.keys("Enter");
    await tui.waitFor(/undone: "Second question"/, "the undo notice");
    const s = await session();
    assert.deepEqual(s.history.map((m) => m.role), [Role.ROLE_USER, Role.ROLE_BOT]);
    assert.equal(s.history[0]!.text, "Hello there");
  });

  it("/retry regenerates the last reply (greedy: the same text)", async () => {
    const before = bot(await session());
    tui.text("/retry");
    tui.keys("Enter");
    await tui.waitFor(/› \/retry[\s\S]*› Hello there[\s\S]*reply cut at 40 tokens/, "the retried reply");
    const s = await session();
    assert.equal(s.history.length, 2, "the retry replaced the exchange");
    assert.deepEqual(bot(s), before);
  });

  it("streams a long reply and Ctrl+C stops it mid-way, without quitting", async () => {
    tui.text("/set max_new_tokens 30000");
    tui.keys("Enter");
    await tui.waitFor(/settings: max_new_tokens=30000/, "the setting");
    tui.keys("Tell me a very long story", "Enter");
    const first = Number((await tui.waitFor(/streaming (\d+) tokens/, "the reply to stream"))[1]);
    // The count on screen grows while the reply streams in.
    await tui.waitFor(new RegExp(`streaming (?!${first} )\\d+ tokens`), "more tokens");
    tui.keys("C-c");
    const stopped = Number((await tui.waitFor(/reply stopped \(cancelled\) after (\d+) tokens/, "the stop"))[1]);
    assert.ok(stopped > first && stopped < 30000, `stopped after ${stopped} tokens`);
    const s = await session();
    assert.equal(s.history.length, 4, "the stopped reply is kept");
    assert.ok(bot(s)[1]!.length > 0);
    // The notice goes away once the 2 s double-press window has passed; the chat is still open.
    await tui.waitFor(/^(?![\s\S]*press Ctrl\+C again)[\s\S]*›/, "the quit hint to go away");
    assert.doesNotMatch(tui.screen(), /\[exited/);
  });

  it("fits a narrowed terminal: the status line splits and drops fields instead of wrapping", async () => {
    tui.resize(48, 30);
    // Two lines (who, then numbers), and the host is the first field to go.
    await tui.waitFor(/^tiny-chatml · chat-ml · session [0-9a-f]{8}\s*\nctx \d+\/4096\s*$/m, "the narrow status lines");
    // No stale copy of the wide prompt and status line is left above the new ones (defect 8).
    await new Promise((r) => setTimeout(r, 500));
    const screen = tui.screen();
    assert.equal(screen.match(/session [0-9a-f]{8}/g)?.length, 1, `one status line:\n${screen}`);
    assert.equal(screen.match(/^›\s*$/gm)?.length, 1, `one prompt:\n${screen}`);
    tui.text("/set max_new_tokens 20");
    tui.keys("Enter");
    await tui.waitFor(/settings: max_new_tokens=20/, "the setting");
    tui.keys("Narrow", "Enter");
    await tui.waitFor(/› Narrow[\s\S]*reply cut at 20 tokens/, "a reply in the narrow terminal");
    tui.resize(100, 30);
  });

  it("Ctrl+C twice quits, and the typed prompts are in the history file", async () => {
    tui.keys("C-c");
    await tui.waitFor(/press Ctrl\+C again to quit/, "the quit hint");
    tui.keys("C-c");
    await tui.waitFor(/\[exited 0\]/, "the chat to exit");
    const history = fs.readFileSync(path.join(stateDir, "nanollm", "history"), "utf8");
    assert.match(history, /"Hello there"\n"Second question"\n"\/undo"\n"\/retry"\n"\/set max_new_tokens 30000"\n"Tell me a very long story"\n"\/set max_new_tokens 20"\n"Narrow"\n$/);
  });
});
