import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, it } from "node:test";
import { cleanup } from "ink-testing-library";
import { COMMANDS } from "nanollm/dist/ui/commands/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { FakeClient } from "./fakeClient.js";
import { KEY, renderChat, waitFor } from "./harness.js";

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

  it("/help keeps each command and its description on one line (defect 7)", async () => {
    const t = renderChat();
    await t.type("/help\r");
    await t.see("Commands:");
    const lines = t.frame().split("\n");
    for (const c of COMMANDS) {
      const line = lines.find((l) => l.trimStart().startsWith(`/${c.name}`)) ?? "";
      const head = `/${c.name}${c.usage ? ` ${c.usage}` : ""}`;
      if (head.length <= 20) assert.ok(line.includes(c.help.slice(0, 20)), `/${c.name}'s help is on its line: ${JSON.stringify(line)}`);
    }
  });

  it("Tab completes the daemon's template names, not a local copy's (defect 14)", async () => {
    const client = new FakeClient();
    client.templates = ["chat-ml", "only-on-the-daemon"];
    const t = renderChat({ client });
    await t.type("/template on");
    await t.type(KEY.tab);
    await t.see("› /template only-on-the-daemon");
  });

  it("/template FILE.json reads the file here and sends its JSON (defect 1)", async () => {
    const dir = tempDir("tui-template");
    const file = path.join(dir, "mine.json");
    fs.writeFileSync(file, JSON.stringify({ user: "U: ${MESSAGE}", bot: "B: ${MESSAGE}" }));
    const t = renderChat();
    await t.type(`/template ${file}\r`);
    await t.idle();
    assert.deepEqual(t.client.calls, [`updateSession ${JSON.stringify({ chatTemplateJson: JSON.stringify({ name: "mine.json", user: "U: ${MESSAGE}", bot: "B: ${MESSAGE}" }) })}`]);
    await t.type(`/template ${dir}/missing.json\r`);
    await t.see(`Cannot read template file ${dir}/missing.json (no such file)`);
  });

  it("/system on a template without a system role says the model will not see it (defect 11)", async () => {
    const client = new FakeClient();
    client.session = { ...client.session, templateHasSystem: false, chatTemplate: "raw" };
    const t = renderChat({ client });
    await t.type("/system Be brief.\r");
    await t.see("system prompt set, but template raw has no system role: the model will not see it");
  });

  it("/set temperature turns sampling on, since greedy decoding would ignore it (defect 11)", async () => {
    const t = renderChat();
    await t.type("/set temperature 0.9\r");
    await t.see("do_sample on: temperature only matters when sampling");
    await t.type("go\r");
    await t.idle();
    assert.deepEqual(t.client.turns[0]!.params, { temperature: 0.9, doSample: true });
  });

  it("/set refuses what the daemon would refuse: ranges come from one shared table", async () => {
    const t = renderChat();
    await t.type("/set top_p 0\r");
    await t.see('top_p must be a number above 0 and at most 1, not "0".');
    await t.type("/set repetition_penalty 0\r");
    await t.see('repetition_penalty must be a number above 0 and at most 10, not "0".');
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
    assert.equal(t.client.sessionFetches, 0, "the turns' end events and the truncate reply carried all it needed");
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
    assert.equal(t.client.historyFetches, 0, "no history fetch to find the last message");
    assert.equal(t.client.history.length, 2, "one exchange, not two");
    assert.match(t.frame(), /greedy decoding repeats the same reply/);
  });

  it("/set changes the params of the following turns; bad values are refused", async () => {
    const t = renderChat();
    await t.type("/set temperature 0.7\r");
    await t.idle();
    await t.type("/set do_sample on\r");
    await t.idle();
    await t.type("/set do_sample default\r");
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
