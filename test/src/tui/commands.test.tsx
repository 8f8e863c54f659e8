import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, it } from "node:test";
import { cleanup } from "ink-testing-library";
import { COMMANDS } from "nanollm/dist/ui/commands/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { renderChat, waitFor } from "./harness.js";

afterEach(() => cleanup());

/** Renders the chat and has one exchange ("hi" -> "echo: hi") so there is something to undo. */
async function withExchange() {
  const t = renderChat();
  await t.type("hi\r");
  await t.see("echo: hi");
  await t.idle();
  return t;
}

describe("slash commands", () => {
  it("/help is generated from the registry: every command, its aliases and its help", async () => {
    const t = renderChat();
    await t.type("/help\r");
    await t.see("Commands:");
    for (const c of COMMANDS) {
      assert.ok(t.frame().includes(`/${c.name}`), `/help lists /${c.name}`);
      assert.ok(t.frame().includes(c.help.slice(0, 40)), `/help explains /${c.name}`);
    }
    assert.match(t.frame(), /\(also \/clear\)/);
  });

  it("an unknown command says so in one sentence and sends nothing", async () => {
    const t = renderChat();
    await t.type("/frobnicate\r");
    await t.see("There is no command /frobnicate; type /help for the list.");
    assert.equal(t.client.turns.length, 0);
  });

  it("/undo drops the last exchange from the daemon's history", async () => {
    const t = await withExchange();
    await t.type("again\r");
    await t.see("echo: again");
    await t.idle();
    await t.type("/undo\r");
    await t.see('undone: "again"');
    assert.deepEqual(t.client.calls, ["truncateSession last exchange"]);
    assert.deepEqual(t.client.history.map((m) => m.text), ["hi", "echo: hi"]);
    await t.type("/undo\r");
    await t.idle();
    await t.type("/undo\r");
    await t.see("There is nothing to undo");
  });

  it("/retry truncates to before the last message and sends it again", async () => {
    const t = await withExchange();
    await t.type("/retry\r");
    await waitFor(() => t.client.turns.length === 2, "the retried turn");
    await t.idle();
    assert.equal(t.client.turns[1]!.text, "hi");
    assert.deepEqual(t.client.calls, ["truncateSession last exchange"]);
    assert.equal(t.client.history.length, 2, "one exchange, not two");
    assert.match(t.frame(), /greedy decoding repeats the same reply/);
  });

  it("/set changes the params of the following turns; bad values are refused", async () => {
    const t = renderChat();
    await t.type("/set temperature 0.7\r");
    await t.idle();
    await t.type("/set do_sample on\r");
    await t.idle();
    await t.type("/set top_k lots\r");
    await t.see('top_k must be a whole number from 0 to 100000, not "lots".');
    await t.type("/set max_new_tokens 8\r");
    await t.idle();
    await t.type("/set temperature default\r");
    await t.idle();
    await t.type("go\r");
    await t.idle();
    assert.deepEqual(t.client.turns[0]!.params, { doSample: true, maxNewTokens: 8 });
  });

  it("/system, /template and /reset change the session on the daemon", async () => {
    const t = await withExchange();
    await t.type("/system You are terse.\r");
    await t.see("system prompt set");
    await t.type("/template raw\r");
    await t.see("template now raw (requested)");
    await t.see(/· raw · session/);
    await t.type("/clear\r");
    await t.see("conversation cleared");
    assert.deepEqual(t.client.calls, ['updateSession {"systemPrompt":"You are terse."}', 'updateSession {"chatTemplate":"raw"}', "resetSession"]);
  });

  it("/session new, list and switch", async () => {
    const t = await withExchange();
    await t.type("/session list\r");
    await t.see(/\* 5e55104a +0s ago {2}"hi" {2}tiny · chat-ml · 2 messages/);
    await t.type("/session new\r");
    await t.see("new session 0e770000");
    await t.see("session 0e770000 · ctx");
    await t.type("/session switch 0e77\r");
    await t.see("── session 0e770000 · 0 messages ──");
    await t.type("/session switch zzz\r");
    await t.see('There is no session "zzz"');
  });

  it("/stats, and /functions with none enabled", async () => {
    const t = await withExchange();
    await t.type("/stats\r");
    await t.see(/last turn: 20 prompt tokens .* 1 token in/);
    await t.type("/functions\r");
    await t.see("no functions enabled");
  });

  it("/save writes the conversation as Markdown or JSON (bot token ids kept)", async () => {
    const dir = tempDir("tui-save");
    const t = await withExchange();
    await t.type(`/save ${dir}/chat.md\r`);
    await t.see("saved 2 messages");
    await t.type(`/save ${dir}/chat.json\r`);
    await t.see("chat.json");
    await t.type(`/save ${dir}/chat.txt\r`);
    await t.see("Give the file a .md or .json extension");
    assert.match(fs.readFileSync(path.join(dir, "chat.md"), "utf8"), /## user\n\nhi\n\n## bot\n\necho: hi/);
    const json = JSON.parse(fs.readFileSync(path.join(dir, "chat.json"), "utf8")) as { messages: { role: string; text: string }[] };
    assert.deepEqual(json.messages.map((m) => `${m.role}: ${m.text}`), ["user: hi", "bot: echo: hi"]);
  });

  it("/quit quits", async () => {
    const t = renderChat();
    await t.type("/quit\r");
    await waitFor(t.quitRequested, "the chat to quit");
  });
});
