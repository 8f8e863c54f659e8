// Builds llama.cpp's multimodal library (tools/mtmd: mtmd, clip and the model graphs) from the source
// bundle that node-llama-cpp ships, against the PREBUILT libllama/libggml of every installed variant:
// the sources compile once to objects (cached per bundle commit), then link once per variant
// (build-mtmd/lib/<variant>/libnanollm-mtmd.so, with that variant's folder as its runpath). Nothing of
// llama.cpp itself is rebuilt. Run by build.mjs during `npm ci`; `node native/mtmd.mjs` alone works too.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { commit, extract, inParallel, llamaScopes, pkg, run } from "./bundle.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
// Beside node-gyp's build/, which `node-gyp rebuild` wipes.
const build = path.join(here, "build-mtmd");
const srcDir = path.join(build, "src");
const objDir = path.join(build, "obj");
const outDir = path.join(build, "lib");
const llamaHeaders = path.join(here, "llama");
const started = Date.now();

// mtmd-helper-gen.cpp (audio generation) is left out: it needs llama.cpp's private src/llama-ext.h
// and nothing here generates audio. mtmd-cli and the debug tool need llama-common.
const wanted = ["tools/mtmd", "vendor/hash", "vendor/stb", "vendor/miniaudio"];
const CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-DNDEBUG", "-DLLAMA_SHARED", "-DLLAMA_BUILD", "-w"];
const CFLAGS = ["-O2", "-fPIC", "-DNDEBUG", "-w"];

/** [source, object, compiler args] for every translation unit, the slowest first. */
function units() {
  const mtmd = path.join(srcDir, "tools", "mtmd");
  const inc = [`-I${mtmd}`, `-I${path.join(srcDir, "vendor")}`, `-I${path.join(llamaHeaders, "include")}`, `-I${path.join(llamaHeaders, "ggml", "include")}`];
  const cpp = ["clip.cpp", "mtmd-helper.cpp", "mtmd.cpp", "mtmd-image.cpp", "mtmd-audio.cpp"].map((f) => path.join(mtmd, f));
  // The 44 model graph files compile as one unit: 9 s instead of ~60 s of parsing the same headers.
  const models = fs.readdirSync(path.join(mtmd, "models")).filter((f) => f.endsWith(".cpp")).sort();
  const unity = path.join(mtmd, "models-all.cpp");
  const text = models.map((f) => `#include "models/${f}"\n`).join("");
  if (!fs.existsSync(unity) || fs.readFileSync(unity, "utf8") !== text) fs.writeFileSync(unity, text);
  const list = [...cpp, unity, path.join(srcDir, "vendor", "hash", "hash.cpp")].map((src) => ({ src, cmd: ["g++", ...CXXFLAGS, ...inc] }));
  list.push({ src: path.join(srcDir, "vendor", "hash", "sha256", "sha256.c"), cmd: ["gcc", ...CFLAGS, `-I${path.join(srcDir, "vendor", "hash")}`] });
  return list.map(({ src, cmd }) => {
    const rel = path.relative(srcDir, src).replace(/[/\\]/g, "_").replace(/\.(c|cpp)$/, ".o");
    return { src, obj: path.join(objDir, rel), cmd };
  });
}

/** Compiles what the stamp does not cover, two at a time (the box has two cores). */
async function compile(list) {
  const stamp = path.join(objDir, ".commit");
  const key = `${commit} ${CXXFLAGS.join(" ")} ${list.map((u) => path.basename(u.obj)).join(" ")}`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === key && list.every((u) => fs.existsSync(u.obj))) return 0;
  fs.rmSync(objDir, { recursive: true, force: true });
  fs.mkdirSync(objDir, { recursive: true });
  await inParallel(list.map((u) => () => run([...u.cmd, "-c", u.src, "-o", u.obj])));
  fs.writeFileSync(stamp, key);
  return list.length;
}

const ELF_MACHINE = { x64: 62, arm64: 183, arm: 40, ia32: 3 };

/** Installed variants whose libraries this machine can link: {name, dir, libs}. */
function variants() {
  const found = [];
  const add = (name, dir) => {
    if (!fs.existsSync(dir)) return;
    const files = fs.readdirSync(dir);
    const pick = (re) => files.find((f) => re.test(f));
    const llama = pick(/^libllama(\.[\w.]+)?\.so$/);
    const ggml = pick(/^libggml(\.[\w.]+)?\.so$/);
    const base = pick(/^libggml-base(\.[\w.]+)?\.so$/);
    if (!llama || !ggml || !base || llama.includes("common")) return;
    const head = Buffer.alloc(20);
    const fd = fs.openSync(path.join(dir, llama), "r");
    fs.readSync(fd, head, 0, 20, 0);
    fs.closeSync(fd);
    if (head.readUInt16LE(18) !== ELF_MACHINE[process.arch]) return;
    found.push({ name, dir, libs: [llama, ggml, base].map((f) => path.join(dir, f)) });
  };
  for (const scope of llamaScopes(here)) {
    for (const p of fs.readdirSync(scope)) {
      const bins = path.join(scope, p, "bins");
      if (fs.existsSync(bins)) for (const v of fs.readdirSync(bins)) if (!found.some((f) => f.name === v)) add(v, path.join(bins, v));
    }
  }
  // `make native`'s build, when there is one (named as daemon/src/engine/projector.ts looks it up).
  const local = path.join(pkg, "llama", "localBuilds");
  if (fs.existsSync(local)) for (const f of fs.readdirSync(local)) add(`local-${f}`, path.join(local, f, "Release"));
  return found;
}

function link(list, variant) {
  const out = path.join(outDir, variant.name, "libnanollm-mtmd.so");
  const inputs = [...list.map((u) => u.obj), ...variant.libs];
  // Relinked when any input differs (npm ci restores the packages' own, older, file times).
  const stamp = `${out}.inputs`;
  const key = JSON.stringify(inputs.map((f) => [f, fs.statSync(f).size, fs.statSync(f).mtimeMs]));
  if (fs.existsSync(out) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === key) return false;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  execFileSync("g++", ["-shared", "-o", out, ...inputs, `-Wl,-rpath,${variant.dir}`, "-Wl,--no-undefined", "-lpthread"], { stdio: ["ignore", "ignore", "pipe"] });
  fs.writeFileSync(stamp, key);
  return true;
}

if (process.platform !== "linux") {
  console.error("native: mtmd (images) is built on Linux only; image input is unavailable here.");
  process.exit(0);
}
try {
  extract(srcDir, wanted);
  const list = units();
  const compiled = await compile(list);
  // A variant that does not link (a GPU library missing a dependency here) only loses images.
  const linked = [];
  for (const v of variants()) {
    try {
      if (link(list, v)) linked.push(v.name);
    } catch (err) {
      const why = String(err.stderr ?? err.message).trim().split("\n").pop();
      console.error(`native: mtmd (images) could not be linked for ${v.name} (${why}); images are unavailable with that variant.`);
    }
  }
  const what = [compiled ? `${compiled} files compiled` : "", linked.length ? `linked for ${linked.join(", ")}` : ""].filter(Boolean).join(", ");
  console.error(`native: mtmd (images) ${what || "up to date"} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} catch (err) {
  process.stderr.write(String(err.stderr ?? err.message ?? err) + "\n");
  console.error("native: mtmd (image input) did not build (see above); g++ and the llama.cpp headers are needed.");
  process.exit(1);
}
