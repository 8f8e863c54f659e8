import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { nanollm, spawnDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";

/** The session a --keep run left, by the id it printed. */
const sessionOf = (stderr: string) => /session (\S+)/.exec(stderr)?.[1] ?? "";

describe("files are read by the client, never by the daemon", () => {
  let d: TestDaemon;
  // The client's working folder: the daemon runs elsewhere and cannot see it.
  const here = tempDir("client-files");
  const chat = (args: string[]) => nanollm(["chat", "--host", d.address, "--max-new-tokens", "4", "--keep", ...args], "", { cwd: here });
  before(async () => {
    d = await spawnDaemon(tinyModel(), ["--ctx", "1024"]);
  });
  after(() => d.stop());

  it("chat --chat-template FILE.json sends the file's template from the client's folder (defect 1)", async () => {
    fs.writeFileSync(path.join(here, "my.json"), JSON.stringify({ user: "U: ${MESSAGE}\n", bot: "B: ${MESSAGE}\n" }));
    const r = await chat(["--chat-template", "my.json", "--prompt", "Hello"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /template my\.json \(requested\)/);
    const missing = await chat(["--chat-template", "nope.json", "--prompt", "Hello"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.trim(), `nanollm: Cannot read template file nope.json (no such file); check the path, or name a built-in template (\`nanollm templates\`).`);
  });

  it("the daemon refuses a template path instead of reading its own files (defect 1)", async () => {
    await assert.rejects(d.client.createSession({ chatTemplate: path.join(here, "my.json") }), /does not read template files/);
  });

  it("--prompt is text even when a file of that name exists; @FILE sends the file (defect 10)", async () => {
    fs.writeFileSync(path.join(here, "hi"), "the file's secret text");
    const text = await chat(["--chat-template", "chat-ml", "--prompt", "hi"]);
    assert.equal(text.code, 0, text.stderr);
    assert.equal((await d.client.getSession(sessionOf(text.stderr), true)).history[0]!.text, "hi");
    const file = await chat(["--chat-template", "chat-ml", "--prompt", "@hi"]);
    assert.equal((await d.client.getSession(sessionOf(file.stderr), true)).history[0]!.text, "the file's secret text");
    const at = await chat(["--chat-template", "chat-ml", "--prompt", "@@handle"]);
    assert.equal((await d.client.getSession(sessionOf(at.stderr), true)).history[0]!.text, "@handle");
  });

  it("--system-prompt @FILE reads the file; a missing one is an error, not text (defect 10)", async () => {
    fs.writeFileSync(path.join(here, "system.txt"), "You are terse.");
    const ok = await chat(["--chat-template", "chat-ml", "--system-prompt", "@system.txt", "--prompt", "Hi"]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((await d.client.getSession(sessionOf(ok.stderr))).systemPrompt, "You are terse.");
    const missing = await chat(["--chat-template", "chat-ml", "--system-prompt", "@missing.txt", "--prompt", "Hi"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.trim(), 'nanollm: Cannot read system prompt file missing.txt (no such file); check the path (or write @@ to send text that starts with "@").');
  });

  it("a sampling flag implies --do-sample; a system prompt the template cannot show is said so (defect 11)", async () => {
    const r = await chat(["--chat-template", "chat-ml", "--temperature", "0.9", "--prompt", "Hi"]);
    assert.equal((await d.client.getSession(sessionOf(r.stderr))).defaults?.doSample, true);
    const raw = await chat(["--chat-template", "raw", "--system-prompt", "You are terse.", "--prompt", "Hi"]);
    assert.equal(raw.code, 0, raw.stderr);
    assert.match(raw.stderr, /template raw has no system role, so the model will not see the system prompt; pick another with --chat-template\./);
    const fns = await chat(["--chat-template", "raw", "--builtins", "DATE", "--prompt", "Hi"]);
    assert.match(fns.stderr, /template raw has no system role to document functions in, so the model does not know them/);
  });

  it("a flag out of the shared range is refused before anything is sent", async () => {
    for (const [flag, value] of [["--top-p", "0"], ["--repetition-penalty", "0"]] as const) {
      const r = await chat(["--prompt", "Hi", flag, value]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`${flag}.*expected a number above 0 and at most`));
    }
  });
});
