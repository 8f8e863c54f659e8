// Builds the engine addon during `npm ci`: llama.cpp's headers from node-llama-cpp's source bundle,
// mtmd and the CPU backend (mtmd.mjs, cpu.mjs), then node-gyp (npm's own) against Node's headers.
// NANOLLM_SANITIZE=1 builds it with AddressSanitizer and UBSan (make test-asan).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
execFileSync(process.execPath, [path.join(here, "headers.mjs")], { stdio: "inherit" });
// mtmd (images) before the addon: the addon includes mtmd's headers and loads the library it links.
execFileSync(process.execPath, [path.join(here, "mtmd.mjs")], { stdio: "inherit" });
// ggml's CPU backend compiled here for this CPU's variant (the prebuilt one is slower at f16 products).
execFileSync(process.execPath, [path.join(here, "cpu.mjs")], { stdio: "inherit" });
const sanitize = process.env.NANOLLM_SANITIZE === "1";
// npm puts its bundled node-gyp on PATH for lifecycle scripts; a direct run finds it beside npm.
const npmGyp = path.join(path.dirname(fs.realpathSync(process.env.npm_execpath ?? "/usr/lib/node_modules/npm/bin/npm-cli.js")), "..", "node_modules", "node-gyp", "bin", "node-gyp.js");
const gyp = fs.existsSync(npmGyp) ? [process.execPath, npmGyp] : ["node-gyp"];
// Offline: build against the headers of the Node that runs this (npm sets nodedir when configured).
const prefix = path.resolve(path.dirname(process.execPath), "..");
const nodedir = process.env.npm_config_nodedir || (fs.existsSync(path.join(prefix, "include", "node", "node.h")) ? prefix : undefined);
const args = ["rebuild", `--directory=${here}`, "--jobs=max", ...(nodedir ? [`--nodedir=${nodedir}`] : []), ...(sanitize ? ["--", "-Dsanitize=-fsanitize=address,undefined -fno-omit-frame-pointer"] : [])];
const started = Date.now();
try {
  execFileSync(gyp[0], [...gyp.slice(1), ...args], { stdio: ["ignore", "ignore", "pipe"] });
} catch (err) {
  // node-gyp's own chatter, only when it failed.
  process.stderr.write(String(err.stderr ?? ""));
  console.error("native: the engine addon did not build (see above); g++, make, python3 and Node's headers are needed.");
  process.exit(1);
}
// A second build (the sanitized one) is copied aside so it never replaces the normal addon.
if (process.env.NANOLLM_ADDON_OUT) {
  fs.mkdirSync(path.dirname(process.env.NANOLLM_ADDON_OUT), { recursive: true });
  fs.copyFileSync(path.join(here, "build", "Release", "nanollm.node"), process.env.NANOLLM_ADDON_OUT);
  execFileSync(gyp[0], [...gyp.slice(1), ...args.filter((a) => a !== "--" && !a.startsWith("-Dsanitize"))], { stdio: ["ignore", "ignore", "pipe"] });
}
console.error(`native: addon built${sanitize ? " with ASan+UBSan" : ""} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
