// The llama.cpp source bundle that node-llama-cpp ships (the commit of its prebuilt libraries), and
// extraction of parts of it: headers (headers.mjs), mtmd (mtmd.mjs), ggml's CPU backend (cpu.mjs).
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
// node-llama-cpp's exports hide package.json: find the package folder from its main entry.
let dir = path.dirname(require.resolve("node-llama-cpp"));
while (!fs.existsSync(path.join(dir, "package.json"))) dir = path.dirname(dir);
/** node-llama-cpp's package folder. */
export const pkg = dir;
export const bundle = path.join(pkg, "llama", "gitRelease.bundle");
export const commit = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" }).split(/\s+/)[0];

/** The node-llama-cpp package scopes (`node_modules/@node-llama-cpp`) from `from` up to the root, nearest first. */
export function llamaScopes(from) {
  const out = [];
  for (let d = from; ; d = path.dirname(d)) {
    const scope = path.join(d, "node_modules", "@node-llama-cpp");
    if (fs.existsSync(scope)) out.push(scope);
    if (path.dirname(d) === d) return out;
  }
}

/** Extracts `wanted` (paths in the source tree) into `out`, unless it already holds them at this commit. Returns whether it extracted. */
export function extract(out, wanted) {
  const stamp = path.join(out, ".commit");
  const key = `${commit} ${wanted.join(" ")}`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === key) return false;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-llama-src-"));
  try {
    execFileSync("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", "--no-checkout", bundle, tmp], { stdio: "inherit" });
    fs.rmSync(out, { recursive: true, force: true });
    fs.mkdirSync(out, { recursive: true });
    const tar = execFileSync("git", ["-C", tmp, "archive", "--format=tar", commit, ...wanted], { maxBuffer: 256 << 20 });
    execFileSync("tar", ["-x", "-C", out], { input: tar });
    fs.writeFileSync(stamp, key);
    return true;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Runs a command (argv, or a shell line), keeping its stderr for the error only. */
export function run(cmd, cwd) {
  return new Promise((resolve, reject) => {
    const child = typeof cmd === "string" ? spawn("sh", ["-c", cmd], { cwd, stdio: ["ignore", "ignore", "pipe"] }) : spawn(cmd[0], cmd.slice(1), { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${typeof cmd === "string" ? cmd.split(" ")[0] : cmd[0]} failed (${code}):\n${err.slice(-4000)}`))));
  });
}

/** Runs jobs two at a time (the box has two cores; NANOLLM_NATIVE_JOBS=1 for one). */
export async function inParallel(jobs) {
  const n = Math.max(1, Math.min(2, Number(process.env.NANOLLM_NATIVE_JOBS) || 2));
  const queue = [...jobs];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) await job();
  };
  await Promise.all(Array.from({ length: n }, worker));
}
