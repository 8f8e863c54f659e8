import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, it } from "node:test";
import { cleanup } from "ink-testing-library";
import { tempDir } from "../helpers/fixtures.js";
import { KEY, renderChat, waitFor } from "./harness.js";

afterEach(() => cleanup());

describe("input line", () => {
  it("edits the line: cursor moves, backspace, Ctrl+A, Ctrl+W and Ctrl+U", async () => {
    const t = renderChat();
    await t.type("hello wrld");
    for (let i = 0; i < 3; i++) await t.type(KEY.left);
    await t.type("o");
    await t.see("› hello world");
    await t.type(KEY.ctrlA);
    await t.type("say ");
    await t.see("› say hello world");
    await t.type("\x05"); // Ctrl+E
    await t.type(KEY.ctrlW);
    await t.see(/› say hello\s*$/m);
    await t.type(KEY.backspace);
    await t.type(KEY.backspace);
    await t.see(/› say hell\s*$/m);
    await t.type(KEY.ctrlU);
    await t.type("fresh" + KEY.enter);
    await waitFor(() => t.client.turns.length === 1, "the turn");
    assert.equal(t.client.turns[0]!.text, "fresh");
  });

  it("↑/↓ walk the history, which is kept in a file across runs", async () => {
    const file = path.join(tempDir("tui-history"), "nanollm", "history");
    const first = renderChat({ historyFile: file });
    await first.type("one\r");
    await first.idle();
    await first.type('"""\rtwo\rlines"""\r');
    await first.idle();
    first.unmount();
    assert.equal(fs.readFileSync(file, "utf8"), '"one"\n"two\\nlines"\n');

    const t = renderChat({ historyFile: file });
    await t.type("draft");
    await t.type(KEY.up);
    await t.see("lines");
    assert.match(t.frame(), /› two\n\s+lines/, "a multi-line entry comes back whole");
    await t.type(KEY.up);
    await t.see("› one");
    await t.type(KEY.down);
    await t.type(KEY.down);
    await t.see("› draft");
  });

  it('sends a """ block as one multi-line message', async () => {
    const t = renderChat();
    await t.type('"""first line\r');
    await t.see('end the message with """');
    await t.type("second line\r");
    await t.see("┆ second line");
    assert.equal(t.client.turns.length, 0, "nothing is sent before the block ends");
    await t.type('last"""\r');
    await waitFor(() => t.client.turns.length === 1, "the block to be sent");
    assert.equal(t.client.turns[0]!.text, "first line\nsecond line\nlast");
  });

  it("keeps the line breaks of a bracketed paste and sends it on Enter", async () => {
    const t = renderChat();
    await t.type("\x1b[200~def f():\r    return 1\x1b[201~");
    await t.see("return 1");
    assert.equal(t.client.turns.length, 0, "a pasted line break does not send");
    await t.type(KEY.enter);
    await waitFor(() => t.client.turns.length === 1, "the paste to be sent");
    assert.equal(t.client.turns[0]!.text, "def f():\n    return 1");
  });

  it("sends typed-ahead text whose Enter arrives in the same chunk", async () => {
    const t = renderChat();
    await t.type("quick question\r");
    await waitFor(() => t.client.turns.length === 1, "the turn");
    assert.equal(t.client.turns[0]!.text, "quick question");
  });

  it("Tab completes command names and arguments, listing the candidates", async () => {
    const t = renderChat();
    await t.type("/se");
    await t.type(KEY.tab);
    await t.see("session  set");
    await t.type("t");
    await t.type(KEY.tab);
    await t.type("te");
    await t.type(KEY.tab);
    await t.see(/› \/set temperature\s*$/m);
    await t.type("0.5\r");
    await t.see("settings: temperature=0.5");
  });

  it("keys that arrive in one chunk act one by one (Backspace, Ctrl+U, Tab, Ctrl+C twice)", async () => {
    const t = renderChat();
    await t.type("abcd\x7f\x7f");
    await t.see(/› ab\s*$/m);
    await t.type("\x15/he\t");
    await t.see(/› \/help\s*$/m);
    await t.type("\x03\x03");
    await waitFor(t.quitRequested, "the chat to quit");
  });
});
