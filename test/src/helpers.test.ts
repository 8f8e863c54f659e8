import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { describe, it } from "node:test";

describe("test helpers", () => {
  it("temporary folders are removed when the test process ends (defect 16)", () => {
    const fixtures = new URL("./helpers/fixtures.js", import.meta.url).href;
    const script = `import { tempDir } from ${JSON.stringify(fixtures)}; import fs from "node:fs"; const d = tempDir("cleanup"); fs.writeFileSync(d + "/f", "x"); console.log(d);`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const dir = r.stdout.trim();
    assert.match(dir, /nanollm-cleanup-/);
    assert.equal(fs.existsSync(dir), false, `${dir} is left behind`);
  });
});
