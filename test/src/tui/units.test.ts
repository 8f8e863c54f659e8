import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import type { Key } from "ink";
import { SessionInfo, StopReason } from "@nanollm/shared";
import { completeLine, parseCommandLine } from "nanollm/dist/ui/commands/registry.js";
import { COMMANDS } from "nanollm/dist/ui/commands/index.js";
import { statusLines } from "nanollm/dist/ui/components/statusParts.js";
import { tailLines } from "nanollm/dist/ui/components/tailLines.js";
import { parseImageLine } from "nanollm/dist/client/attachImages.js";
import { defaultHistoryFile, InputHistory } from "nanollm/dist/ui/input/InputHistory.js";
import { editLine } from "nanollm/dist/ui/input/lineEditor.js";
import { splitLive } from "nanollm/dist/ui/markdown/splitLive.js";
import { initialState, reducer } from "nanollm/dist/ui/state.js";
import { tempDir } from "../helpers/fixtures.js";

const key = (k: Partial<Key> = {}) => k as Key;

describe("tui units", () => {
  it("splitLive prints finished paragraphs, never inside a code fence", () => {
    assert.deepEqual(splitLive("one\n\ntwo"), { done: "one\n\n", rest: "two" });
    assert.deepEqual(splitLive("no break yet"), { done: "", rest: "no break yet" });
    assert.deepEqual(splitLive("```\ncode\n\nmore\n"), { done: "", rest: "```\ncode\n\nmore\n" });
    assert.deepEqual(splitLive("```\ncode\n```\n\nafter"), { done: "```\ncode\n```\n\n", rest: "after" });
  });

  it("the reducer moves streamed paragraphs to the transcript and ends with the daemon's reply", () => {
    let s = initialState("h", SessionInfo.fromPartial({ sessionId: "s" }), {});
    s = reducer(s, { type: "turnStart" });
    s = reducer(s, { type: "delta", text: "Para one.\n\nPara", tokens: 5 });
    assert.deepEqual(s.entries.map((e) => e.text), ["Para one.\n\n"]);
    assert.equal(s.live?.text, "Para");
    s = reducer(s, { type: "end", reply: "Para one.\n\nPara two.", stats: undefined, stop: StopReason.STOP_REASON_EOS });
    assert.deepEqual(s.entries.map((e) => [e.text, e.cont ?? false]), [["Para one.\n\n", false], ["Para two.", true]]);
    assert.equal(s.live, undefined);
  });

  it("tailLines keeps the end of a live reply taller than the terminal", () => {
    assert.deepEqual(tailLines("a\nb\nc", 10, 5), { text: "a\nb\nc", hidden: false });
    assert.deepEqual(tailLines("a\nb\nc", 10, 2), { text: "b\nc", hidden: true });
    assert.deepEqual(tailLines("x".repeat(25), 10, 2), { text: "x".repeat(15), hidden: true });
  });

  it("the status line splits in two on a narrow terminal, then drops the least important fields", () => {
    const s = initialState("127.0.0.1:7433", SessionInfo.fromPartial({ sessionId: "abcdef1234", model: "m", chatTemplate: "chat-ml", contextUsed: 5, contextSize: 99 }), {});
    assert.deepEqual(statusLines(s, 200), ["127.0.0.1:7433 · m · chat-ml · session abcdef12 · ctx 5/99"]);
    assert.deepEqual(statusLines(s, 50), ["127.0.0.1:7433 · m · chat-ml · session abcdef12", "ctx 5/99"]);
    assert.deepEqual(statusLines(s, 30), ["m · chat-ml · session abcdef12", "ctx 5/99"]);
  });

  it("line editing: words, kills and surrogate pairs", () => {
    const l = { text: "héllo 🙂 world", cursor: 8 };
    assert.deepEqual(editLine(l, "", key({ backspace: true })), { text: "héllo  world", cursor: 6 });
    assert.deepEqual(editLine(l, "w", key({ ctrl: true })), { text: "héllo  world", cursor: 6 });
    assert.deepEqual(editLine(l, "k", key({ ctrl: true })), { text: "héllo 🙂", cursor: 8 });
    assert.deepEqual(editLine(l, "", key({ leftArrow: true })), { text: l.text, cursor: 6 });
    assert.equal(editLine(l, "x", key()), undefined, "a printable key is not an edit");
  });

  it("commands: a path is not a command; completion finishes names and arguments", () => {
    // Template names and session ids come from the daemon (ListTemplates, ListSessions), never from a local copy.
    const ctx = { commands: COMMANDS, known: { templates: ["chat-ml", "llama-3", "llama-3.1", "llama-3.1-tools", "phi-3"], sessionIds: ["5e55104a-0000", "0e770000-1111"] } };
    assert.deepEqual(parseCommandLine("/Set top_k 4"), { name: "set", args: "top_k 4" });
    assert.equal(parseCommandLine("/home/me/notes.txt is long"), undefined);
    assert.deepEqual(completeLine(ctx, "/ret"), { line: "/retry ", candidates: [] });
    assert.deepEqual(completeLine(ctx, "/session sw"), { line: "/session switch ", candidates: [] });
    assert.deepEqual(completeLine(ctx, "/template phi-3"), { line: "/template phi-3 ", candidates: [] });
    assert.deepEqual(completeLine(ctx, "/template llama-3")?.candidates, ["llama-3", "llama-3.1", "llama-3.1-tools"]);
    assert.equal(completeLine(ctx, "hello"), undefined);
  });

  it("Tab completes session ids for /session switch (defect 6)", () => {
    const ctx = { commands: COMMANDS, known: { templates: [], sessionIds: ["5e55104a-0000-4000", "0e770000-1111-4000", "0e7799aa-2222-4000"] } };
    assert.deepEqual(completeLine(ctx, "/session switch 5e"), { line: "/session switch 5e55104a ", candidates: [] });
    assert.deepEqual(completeLine(ctx, "/session switch 0e77")?.candidates, ["0e770000", "0e7799aa"]);
  });

  it("history: the state dir, a file per user, consecutive repeats kept once", () => {
    assert.equal(defaultHistoryFile({ XDG_STATE_HOME: "/x/state" }), "/x/state/nanollm/history");
    assert.match(defaultHistoryFile({}), /\.local\/state\/nanollm\/history$/);
    const file = path.join(tempDir("hist"), "h");
    const h = new InputHistory(file);
    h.add("a");
    h.add("a");
    h.add("b\nc");
    assert.equal(new InputHistory(file).size, 2);
    assert.equal(h.older(""), "b\nc");
    assert.equal(h.older(""), "a");
    assert.equal(h.older(""), undefined);
    // A history path under a regular file can never be created.
    const unwritable = new InputHistory(path.join(file, "nanollm", "history"));
    unwritable.add("still works");
    assert.equal(unwritable.older(""), "still works");
  });

  it("an image path is recognised typed, quoted, with escaped spaces or as a file:// URL", () => {
    const file = "/tmp/some dir/my pic.JPG";
    assert.deepEqual(parseImageLine(`"${file}"`).sources, [file]);
    assert.deepEqual(parseImageLine(file.replace(/ /g, "\\ ")).sources, [file]);
    assert.deepEqual(parseImageLine(`file://${encodeURI(file)} what`), { text: "what", sources: [file], offsets: [0] });
    assert.deepEqual(parseImageLine(`look at ${file.replace(/ /g, "\\ ")} please`), { text: "look at please", sources: [file], offsets: [8] });
  });
});
