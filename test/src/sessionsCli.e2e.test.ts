import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { nanollm, spawnDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";

describe("sessions from the command line", () => {
  let d: TestDaemon;
  const chat = (args: string[], stdin = "") => nanollm(["chat", "--host", d.address, "--chat-template", "chat-ml", "--max-new-tokens", "4", ...args], stdin);
  const ids = async () => (await d.client.listSessions()).map((s) => s.sessionId).sort();
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "1024"]);
  });
  after(() => d.stop());

  it("a one-shot chat (--prompt or stdin) leaves no session behind unless --keep (defect 2)", async () => {
    const before = await ids();
    const a = await chat(["--prompt", "Hello there"]);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /deleted at the end; --keep keeps it/);
    const b = await chat([], "Piped prompt\n");
    assert.equal(b.code, 0, b.stderr);
    assert.deepEqual(await ids(), before, "no session left by --prompt or stdin runs");
    const kept = await chat(["--keep", "--prompt", "Keep me"]);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal((await ids()).length, before.length + 1);
  });

  it("empty stdin fails with one sentence and creates no session (defect 2)", async () => {
    const before = await ids();
    const r = await chat([], "");
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), "nanollm: Nothing came on stdin; pipe the prompt in, or give it with --prompt.");
    assert.deepEqual(await ids(), before);
  });

  it("chat --continue goes on with the most recently used session (defect 2)", async () => {
    await chat(["--keep", "--prompt", "Older one"]);
    const first = await chat(["--keep", "--prompt", "Newest one"]);
    const id = /session (\S+)/.exec(first.stderr)![1]!;
    const r = await nanollm(["chat", "--host", d.address, "--continue", "--prompt", "And then?", "--max-new-tokens", "4"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await d.client.getSession(id)).messageCount, 4);
    assert.ok(r.stderr.includes(`session ${id} ·`), "and keeps it (it was not this run's own)");
  });

  it("sessions list shows each session's title and when it was used; prune --older-than removes old ones (defect 2)", async () => {
    await chat(["--keep", "--prompt", "What is a llama?\nA long second line"]);
    const list = await nanollm(["sessions", "list", "--host", d.address]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout.split("\n")[0]!, /^[0-9a-f-]{36} +\d+s ago {2}"What is a llama\?" {2}tiny-chatml · chat-ml · 2 messages/, "newest first, with the first user line as title");
    const bare = await nanollm(["sessions", "--host", d.address]);
    const idsOf = (out: string) => out.split("\n").map((l) => l.split(" ")[0]);
    assert.deepEqual(idsOf(bare.stdout), idsOf(list.stdout), "`sessions` alone lists");
    const none = await nanollm(["sessions", "prune", "--older-than", "1h", "--host", d.address]);
    assert.equal(none.stdout.trim(), "deleted 0 sessions");
    await new Promise((r) => setTimeout(r, 1100));
    const all = await nanollm(["sessions", "prune", "--older-than", "1s", "--host", d.address]);
    assert.match(all.stdout.trim(), /^deleted \d+ sessions?$/);
    assert.deepEqual(await ids(), []);
    const bad = await nanollm(["sessions", "prune", "--older-than", "soon", "--host", d.address]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /expected an age such as 30m, 12h, 7d or 2w, got "soon"/);
  });

  it("a session id prefix works for chat --session, sessions show and sessions rm (defect 6)", async () => {
    const first = await chat(["--keep", "--prompt", "Hello there"]);
    const id = /session (\S+)/.exec(first.stderr)![1]!;
    const prefix = id.slice(0, 8);
    const more = await nanollm(["chat", "--host", d.address, "--session", prefix, "--prompt", "And then?", "--max-new-tokens", "4"]);
    assert.equal(more.code, 0, more.stderr);
    assert.equal((await d.client.getSession(id)).messageCount, 4);
    const show = await nanollm(["sessions", "show", prefix, "--host", d.address]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^session ${id} `));
    assert.match(show.stdout, /\[user\] Hello there\n\[bot\] .*\n\[user\] And then\?/);
    const rm = await nanollm(["sessions", "rm", prefix, "--host", d.address]);
    assert.equal(rm.stdout.trim(), `deleted ${id}`);
  });

  it("an unknown sessions subcommand says so and lists the real ones (defect 9)", async () => {
    const r = await nanollm(["sessions", "bogus", "--host", d.address]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), "nanollm: There is no `sessions bogus` command; use one of list, show, rm, prune.");
  });
});
