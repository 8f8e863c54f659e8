// Extracts llama.cpp's public headers from the source bundle that node-llama-cpp ships (the same
// commit as its prebuilt libraries) into native/llama/, once. Nothing of llama.cpp is compiled.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const out = path.join(here, "llama");
const require = createRequire(import.meta.url);
// node-llama-cpp's exports hide package.json: find the package folder from its main entry.
let pkg = path.dirname(require.resolve("node-llama-cpp"));
while (!fs.existsSync(path.join(pkg, "package.json"))) pkg = path.dirname(pkg);
const bundle = path.join(pkg, "llama", "gitRelease.bundle");
const wanted = ["include/llama.h", "include/llama-cpp.h", "ggml/include"];

const stamp = path.join(out, ".commit");
const commit = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" }).split(/\s+/)[0];
if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === commit) process.exit(0);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-llama-src-"));
try {
  execFileSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", "--no-checkout", bundle, tmp], { stdio: "inherit" });
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  const tar = execFileSync("git", ["-C", tmp, "archive", "--format=tar", commit, ...wanted], { maxBuffer: 256 << 20 });
  execFileSync("tar", ["-x", "-C", out], { input: tar });
  fs.writeFileSync(stamp, commit);
  console.error(`native: llama.cpp headers ${commit.slice(0, 7)} extracted`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
