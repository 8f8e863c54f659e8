import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { cleanup, render } from "ink-testing-library";
import { Message, Role } from "@nanollm/shared";
import { createChat } from "nanollm/dist/ui/createChat.js";
import { inProcessDaemon, turn, type TestDaemon } from "../helpers/daemon.js";
import { tempDir, tinyModel } from "../helpers/fixtures.js";
import { waitFor } from "./harness.js";

describe("/model NAME in the chat screen, on the real daemon", () => {
  let d: TestDaemon;
  before(async () => {
    const dir = tempDir("models");
    fs.copyFileSync(tinyModel(), path.join(dir, "alpha.gguf"));
    fs.copyFileSync(tinyModel("tiny-seed2", 2), path.join(dir, "beta.gguf"));
    d = await inProcessDaemon(path.join(dir, "alpha.gguf"), { daemon: { modelsDir: dir, keepAliveMs: -1 } });
  });
  after(async () => {
    cleanup();
    await d.stop();
  });

  it("asks first, then continues the conversation on the other model in a new session (re-prefilled), keeping the old one", async () => {
    const first = await d.client.createSession({ chatTemplate: "chat-ml", defaults: { maxNewTokens: 12 } });
    const chat = createChat({ client: d.client, session: first, params: {}, historyFile: undefined, sessionRequest: { chatTemplate: "chat-ml" }, onQuit: () => undefined });
    const ui = render(chat.element);
    const frame = () => ui.lastFrame() ?? "";
    const idle = () => waitFor(() => !chat.controller.busy, "the chat to be idle", 20_000);
    await chat.controller.submit("Hello there");
    await idle();
    await chat.controller.submit("/model beta");
    await idle();
    assert.match(frame().replace(/\s+/g, " "), /Continue on beta\? A new session on beta starts with this conversation \(2 messages, read again by beta\); session \w{8} stays on alpha\. Type \/model beta again to switch\./);
    assert.equal(chat.store.getState().session.sessionId, first.sessionId, "nothing changed before the confirmation");
    await chat.controller.submit("/model beta");
    await idle();
    const moved = chat.store.getState().session;
    assert.notEqual(moved.sessionId, first.sessionId);
    assert.equal(moved.model, "beta");
    assert.equal(moved.messageCount, 2);
    await chat.controller.submit("Tell me more");
    await idle();
    const onBeta = await d.client.getSession(moved.sessionId, true);
    // The oracle: a fresh beta session given the same conversation as text replies the same.
    const texts = (await d.client.getSession(first.sessionId, true)).history.map((m) => Message.fromPartial({ role: m.role, text: m.text }));
    const fresh = await d.client.createSession({ model: "beta", chatTemplate: "chat-ml", defaults: { maxNewTokens: 12 }, history: texts });
    assert.equal(onBeta.history.at(-1)?.role, Role.ROLE_BOT);
    assert.equal(onBeta.history.at(-1)?.text, (await turn(d.client, fresh.sessionId, "Tell me more", 12)).text);
    // The old session stays on alpha with its two messages.
    const old = await d.client.getSession(first.sessionId);
    assert.equal(old.model, "alpha");
    assert.equal(old.messageCount, 2);
    ui.unmount();
  });
});
