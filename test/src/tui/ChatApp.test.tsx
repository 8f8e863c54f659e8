import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, it } from "node:test";
import { cleanup } from "ink-testing-library";
import { gradient, makePng } from "../helpers/images.js";
import { tempDir } from "../helpers/fixtures.js";
import { Message, Role, SessionInfo } from "@nanollm/shared";
import { FakeClient } from "./fakeClient.js";
import { KEY, renderChat, waitFor } from "./harness.js";

afterEach(() => cleanup());

describe("chat screen: a turn", () => {
  it("sends the typed line, streams the reply and files it in the transcript", async () => {
    const client = new FakeClient(() => [{ text: "Hello" }, { text: ", world" }, { text: "!" }]);
    const t = renderChat({ client });
    await t.type("Hi there");
    await t.see("› Hi there");
    await t.type(KEY.enter);
    await t.see("Hello, world!");
    await t.idle();
    assert.deepEqual(client.turns.map((x) => x.text), ["Hi there"]);
    assert.equal(t.store.getState().live, undefined, "the reply left the live area");
    assert.equal(t.store.getState().entries.at(-1)?.text, "Hello, world!");
  });

  it("renders the reply's Markdown: lists, emphasis and code blocks lose their markup", async () => {
    const client = new FakeClient(() => [{ text: "Steps:\n\n- **first** step\n- second\n\n```js\nconst x = 1;\n```\n" }]);
    const t = renderChat({ client });
    await t.type("how?\r");
    await t.see("first step");
    await t.idle();
    const frame = t.frame();
    assert.doesNotMatch(frame, /\*\*first\*\*/, "emphasis markers are rendered, not shown");
    assert.doesNotMatch(frame, /```/, "code fences are rendered, not shown");
    assert.match(frame, /const x = 1;/);
    assert.match(frame, /^\s*\* second$/m, "list items are bulleted");
  });

  it("shows the status line: host, model, template, session, context and the last turn's speeds", async () => {
    const t = renderChat();
    await t.see("fake:7433");
    assert.match(t.frame(), /fake:7433 · tiny · chat-ml · session 5e55104a · ctx 12\/1024/);
    await t.type("go\r");
    await t.see("decode 345.6 tok/s");
    assert.match(t.frame(), /ctx 32\/1024 · prefill 812 tok\/s · decode 345\.6 tok\/s/, "context used comes with the turn's end; each speed has its unit (defect 13)");
  });

  it("a finished reply keeps its single line breaks (defect 5)", async () => {
    const client = new FakeClient(() => [{ text: "Line one\nLine two" }]);
    const t = renderChat({ client });
    await t.type("two lines?\r");
    await t.idle();
    await t.see("Line two");
    assert.match(t.frame(), /Line one\n\s*Line two/, "two lines, not one");
  });

  it("the status line's context moves while a reply streams, and a new session drops the old figures (defect 13)", async () => {
    const client = new FakeClient(() => [{ text: "la " }]);
    client.slow = true;
    const t = renderChat({ client });
    await t.type("go\r");
    await t.see(/streaming [1-9]\d* tokens/);
    const ctx = () => Number(/ctx (\d+)\/1024/.exec(t.frame())![1]);
    const early = ctx();
    await waitFor(() => ctx() > early, "the context count to grow during the reply");
    await t.type(KEY.esc);
    await t.idle();
    await t.see("decode 345.6 tok/s");
    client.slow = false;
    await t.type("/session new\r");
    await t.see("new session 0e770000");
    await t.idle();
    assert.doesNotMatch(t.frame(), /decode 345\.6/, "the previous session's speeds are gone");
  });

  it("shows function calls and results distinctly, in order with the text", async () => {
    const client = new FakeClient(() => [{ text: "Let me look." }, { call: "get_weather", args: '{"city":"Oslo"}' }, { result: "12 °C" }, { text: "It is mild." }]);
    const t = renderChat({ client });
    await t.type("weather?\r");
    await t.see("It is mild.");
    const frame = t.frame();
    const order = ["Let me look.", 'function call get_weather({"city":"Oslo"})', "function result: 12 °C", "It is mild."].map((s) => frame.indexOf(s));
    assert.ok(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1]!)), `text, call, result and text in order:\n${frame}`);
  });

  it("a dropped image path is read here and goes with the next message, never as text", async () => {
    const png = path.join(tempDir("tui-image"), "pixel one.png");
    fs.writeFileSync(png, makePng(8, 4, gradient));
    const t = renderChat();
    await t.type(`'${png}'\r`);
    await t.see("[image pixel one.png, 8×4");
    await t.see("type your message");
    assert.equal(t.client.turns.length, 0, "an image alone waits for the question");
    await t.type("what is this?\r");
    await waitFor(() => t.client.turns.length === 1, "the turn");
    assert.equal(t.client.turns[0]!.text, "what is this?");
    assert.equal(t.client.turns[0]!.images.length, 1);
    assert.equal(t.client.turns[0]!.images[0]!.name, "pixel one.png");
    assert.equal(t.client.turns[0]!.images[0]!.offset, 0, "before the message it waited for");
  });

  it("an image named inside the line goes with it; a missing one is an error and nothing is sent", async () => {
    const dir = tempDir("tui-image2");
    fs.writeFileSync(path.join(dir, "cat.png"), makePng(4, 4, gradient));
    const t = renderChat();
    await t.type(`is ${path.join(dir, "cat.png")} a cat?\r`);
    await waitFor(() => t.client.turns.length === 1, "the turn");
    assert.equal(t.client.turns[0]!.text, "is a cat?");
    assert.equal(t.client.turns[0]!.images.length, 1);
    assert.equal(t.client.turns[0]!.images[0]!.offset, 3, "it stands where it was typed");
    await t.idle();
    await t.type(`${path.join(dir, "dog.jpg")} and this?\r`);
    await t.see("No image file");
    assert.equal(t.client.turns.length, 1, "nothing was sent");
    await t.type(`/image ${path.join(dir, "cat.png")}\r`);
    await t.see("the image goes with it");
    await t.type("again?\r");
    await waitFor(() => t.client.turns.length === 2, "the second turn");
    assert.equal(t.client.turns[1]!.images.length, 1);
  });
});

describe("chat screen: which session", () => {
  it("a continued session (chat --session ID) shows its conversation at once (defect 6)", async () => {
    const client = new FakeClient();
    client.history = [Message.fromPartial({ role: Role.ROLE_USER, text: "What came before?" }), Message.fromPartial({ role: Role.ROLE_BOT, text: "An earlier answer." })];
    const t = renderChat({ client });
    await t.see("An earlier answer.");
    assert.match(t.frame(), /── session 5e55104a · 2 messages ──[\s\S]*› What came before\?[\s\S]*An earlier answer\./);
  });

  it("a new chat offers the last used session, and an empty new session is deleted at the end (defect 2)", async () => {
    const client = new FakeClient();
    client.others = [SessionInfo.fromPartial({ sessionId: "abcdef12-0000", title: "Yesterday's question", messageCount: 2, updatedAtMs: Date.now() - 3_600_000 })];
    const t = renderChat({ client, fresh: true });
    await t.see('last session abcdef12 "Yesterday\'s question" (1h ago): /session switch abcdef12 resumes it');
    await t.controller.dispose();
    assert.deepEqual(client.calls, [`deleteSession ${client.session.sessionId}`], "the unused session is not left behind");
  });

  it("a new session that was used stays on the daemon (defect 2)", async () => {
    const client = new FakeClient();
    const t = renderChat({ client, fresh: true });
    await t.type("hello\r");
    await t.idle();
    await t.controller.dispose();
    assert.deepEqual(client.calls, []);
  });
});

describe("chat screen: stopping and quitting", () => {
  it("Esc stops a running reply, which ends as cancelled", async () => {
    const client = new FakeClient(() => [{ text: "la " }]);
    client.slow = true;
    const t = renderChat({ client });
    await t.type("go on forever\r");
    await t.see("la la la");
    await t.see(/streaming \d+ tokens/);
    await t.type(KEY.esc);
    await t.see(/reply stopped \(cancelled\) after \d+ tokens/);
    await t.idle();
    assert.equal(t.quitRequested(), false);
  });

  it("Ctrl+C stops a reply; a second Ctrl+C within 2 s quits", async () => {
    const client = new FakeClient(() => [{ text: "la " }]);
    client.slow = true;
    const t = renderChat({ client });
    await t.type("go\r");
    await t.see("la la");
    await t.type(KEY.ctrlC);
    await t.see("press Ctrl+C again to quit");
    await t.see("reply stopped (cancelled)");
    assert.equal(t.quitRequested(), false, "one Ctrl+C only stops the reply");
    await t.type(KEY.ctrlC);
    await waitFor(t.quitRequested, "the chat to quit");
  });

  it("Ctrl+C twice quits when idle; once clears the line being typed", async () => {
    const t = renderChat();
    await t.type("half a thou");
    await t.type(KEY.ctrlC);
    await t.see("press Ctrl+C again to quit");
    assert.doesNotMatch(t.frame(), /half a thou/);
    assert.equal(t.quitRequested(), false);
    await t.type(KEY.ctrlC);
    await waitFor(t.quitRequested, "the chat to quit");
  });

  it("Enter while a reply runs keeps the new message in the input", async () => {
    const client = new FakeClient(() => [{ text: "la " }]);
    client.slow = true;
    const t = renderChat({ client });
    await t.type("first\r");
    await t.see("la la");
    await t.type("second\r");
    await t.see("a reply is still running");
    assert.match(t.frame(), /› second/);
    await t.type(KEY.esc);
    await t.idle();
    await t.type(KEY.enter);
    await waitFor(() => client.turns.length === 2, "the kept message to be sent");
    assert.equal(client.turns[1]!.text, "second");
    await t.type(KEY.esc);
  });
});
