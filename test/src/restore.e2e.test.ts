import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { assertKeptChatting, startChatter } from "./helpers/chatter.js";
import { inProcessDaemon, turn } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import { rejectsWith } from "./helpers/assertions.js";

type Json = Record<string, unknown> & { history: { tokens: number[] }[] };

describe("journal records are checked on restore", () => {
  it("item 8: bad records are quarantined with a log line; the good session continues as a fresh replay would, and nothing is written outside the data folder", async () => {
    const root = tempDir("restore");
    const dataDir = path.join(root, "data");
    const first = await inProcessDaemon(tinyModel(), { dataDir });
    const names = ["good", "token", "setting", "grammar", "template", "functions", "traversal"] as const;
    const ids: Record<string, string> = {};
    for (const name of names) {
      ids[name] = (await first.client.createSession({ chatTemplate: "chat-ml" })).sessionId;
      await turn(first.client, ids[name]!, "Hello there", 4);
    }
    const goodBefore = await first.client.getSession(ids.good!, true);
    await first.stop();

    const sessions = path.join(dataDir, "sessions");
    const edit = (name: string, change: (r: Json) => void) => {
      const file = path.join(sessions, `${ids[name]}.json`);
      const record = JSON.parse(fs.readFileSync(file, "utf8")) as Json;
      change(record);
      fs.writeFileSync(file, JSON.stringify(record));
    };
    edit("token", (r) => (r.history[1]!.tokens[0] = 99_999_999));
    edit("setting", (r) => (r.defaults = { temperature: "hot" }));
    // A grammar nested deep enough to crash llama.cpp's parser, journaled before it was checked.
    edit("grammar", (r) => (r.defaults = { grammar: `root ::= ${"(".repeat(20_000)}"a"${")".repeat(20_000)}` }));
    edit("template", (r) => (r.template = { name: "x", user: "no placeholder", bot: 5 }));
    edit("functions", (r) => (r.clientFunctions = [{ name: "DEEP", description: "", parametersJson: `{"a":${"[".repeat(20_000)}${"]".repeat(20_000)}}` }]));
    // An id that would make every save write outside the sessions folder.
    edit("traversal", (r) => (r.id = "../../escaped"));
    fs.writeFileSync(path.join(sessions, `x.json.${process.pid}.tmp`), "{");
    const kvDir = path.join(dataDir, "kv", "tiny-chatml");
    fs.mkdirSync(kvDir, { recursive: true });
    fs.writeFileSync(path.join(kvDir, "orphan.kv.tmp"), "partial");

    const second = await inProcessDaemon(tinyModel(), { dataDir });
    const lines = second.logLines;
    try {
      const listed = (await second.client.listSessions()).map((s) => s.sessionId);
      assert.deepEqual(listed, [ids.good], "only the good session is restored");
      const chatter = await startChatter(second.address);
      for (const name of names.slice(1)) {
        assert.ok(fs.existsSync(path.join(sessions, `${ids[name]}.json.corrupt`)), `${name}: quarantined as *.corrupt`);
        assert.ok(lines.some((l) => l.includes(`${ids[name]}.json is unreadable or invalid`)), `${name}: a log line says why`);
      }
      assert.ok(lines.some((l) => /outside the vocabulary/.test(l)) && lines.some((l) => /temperature must be/.test(l)) && lines.some((l) => /does not match the file name|not a safe file name/.test(l)));
      assert.ok(!fs.existsSync(path.join(sessions, `x.json.${process.pid}.tmp`)) && !fs.existsSync(path.join(kvDir, "orphan.kv.tmp")), "stray temp files are removed at start");
      await rejectsWith(turn(second.client, ids.token!, "hi"), "NOT_FOUND", /no session/);
      // The good session continues exactly as a fresh session replaying its history.
      const next = await turn(second.client, ids.good!, "And now?", 6);
      const fresh = await second.client.createSession({ chatTemplate: "chat-ml", history: goodBefore.history });
      assert.deepEqual(next.ids, (await turn(second.client, fresh.sessionId, "And now?", 6)).ids);
      assertKeptChatting(await chatter.stop(), 1, 5000);
      assert.deepEqual(fs.readdirSync(root), ["data"], "nothing was written beside the data folder");
      assert.ok(!fs.existsSync(path.join(root, "escaped.json")));
    } finally {
      await second.stop();
    }
  });

  it("item 10: a per-owner quota refuses one owner's extra session with a sentence naming it, and other owners still create", async () => {
    const d = await inProcessDaemon(tinyModel(), { daemon: { maxSessionsPerOwner: 2 } });
    try {
      const chatter = await startChatter(d.address);
      await d.client.createSession({ chatTemplate: "chat-ml" });
      await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml" }), "RESOURCE_EXHAUSTED", /your quota \(NANOLLM_MAX_SESSIONS_PER_OWNER\)/);
      // Identities arrive with authentication; the store already counts per owner.
      const host = await d.daemon.state.models.get("");
      const other = await d.daemon.state.sessions.create({ host, template: "chat-ml", systemPrompt: undefined, defaults: undefined, history: [], owner: "someone-else" });
      assert.equal(other.owner, "someone-else");
      assertKeptChatting(await chatter.stop(), 1, 5000);
    } finally {
      await d.stop();
    }
  });
});
