import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { Role, type ChatEvent } from "@nanollm/shared";
import { CLI, spawnDaemon, turn, type TestDaemon } from "../helpers/daemon.js";
import { tempDir, tinyModel } from "../helpers/fixtures.js";
import { haveTmux, TmuxScreen } from "./tmux.js";

/** Letters and digits only: Markdown rendering and line wrapping may change everything else. */
const squash = (s: string) => s.replace(/[^A-Za-z0-9]/g, "");

describe("nanollm chat --session on a live session (tmux, real daemon)", { skip: haveTmux() ? false : "tmux is not installed" }, () => {
  let d: TestDaemon;
  let tui: TmuxScreen;
  let sessionId = "";
  let running: { done: Promise<ChatEvent[]>; stop: () => void };
  /** The screen with its scrollback: a long reply scrolls off the visible rows. */
  const everything = () => execFileSync("tmux", ["capture-pane", "-p", "-J", "-S", "-5000", "-t", tui.name], { encoding: "utf8" });

  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "4096", "--parallel", "2"]);
    sessionId = (await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId;
    await turn(d.client, sessionId, "Earlier question", 6);
    // A reply generating when the chat opens: it ends when the test stops it.
    const abort = new AbortController();
    const events: ChatEvent[] = [];
    let firstText = () => {};
    const started = new Promise<void>((r) => (firstText = r));
    const done = (async () => {
      for await (const e of d.client.turn(sessionId, "Tell a long story", { maxNewTokens: 3000, minNewTokens: 3000 }, abort.signal)) {
        events.push(e);
        if (e.kind?.$case === "text") firstText();
      }
      return events;
    })();
    await started;
    running = { done, stop: () => abort.abort() };
    tui = new TmuxScreen([process.execPath, CLI, "chat", "--host", d.address, "--session", sessionId.slice(0, 8)], { env: { XDG_STATE_HOME: tempDir("tui-attach") } });
  });
  after(async () => {
    running?.stop();
    tui?.kill();
    await d?.stop();
  });

  it("shows the reply in progress from its start and streams the rest", async () => {
    await tui.waitFor(/a turn from another client[\s\S]*Tell a long story[\s\S]*streaming \d+ tokens/, "the running reply");
    running.stop();
    const events = await running.done;
    const end = events.at(-1)?.kind;
    const reply = end?.$case === "end" ? end.end.reply : "";
    await tui.waitFor(/reply stopped \(cancelled\)/, "the reply's end");
    assert.ok(squash(reply).length > 50, "a reply of some length");
    const screen = squash(everything());
    assert.ok(screen.includes(squash("Earlier question")), "the conversation before it is shown");
    assert.ok(screen.includes(squash(reply)), "the whole reply is on the screen, the part made before the chat opened too");
  });

  it("shows a turn another client sends as it happens, and its own turns once", async () => {
    const other = await turn(d.client, sessionId, "Sent from elsewhere", 12);
    await tui.waitFor(/Sent from elsewhere/, "the other client's message");
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(squash(everything()).includes(squash(`Sent from elsewhere${other.text}`)), "its message, then its reply");
    tui.keys("My own question", "Enter");
    await tui.waitFor(/My own question[\s\S]*reply cut at \d+ tokens/, "this chat's reply");
    const history = (await d.client.getSession(sessionId, true)).history;
    assert.equal(history.at(-2)?.text, "My own question");
    const mine = history.at(-1)!;
    assert.equal(mine.role, Role.ROLE_BOT);
    const all = everything();
    assert.equal(all.split("My own question").length - 1, 1, "its own message shows once");
    assert.ok(squash(all).includes(squash(`My own question${mine.text}`)), "with its reply after it");
    assert.doesNotMatch(all, /a turn from another client[^\n]*\n[^\n]*My own question/, "not shown as another client's");
  });
});
