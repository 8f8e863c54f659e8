// Builds ggml's CPU backend from the source bundle (the commit of the prebuilt libraries) for the
// CPU variant this machine runs (the one of node-llama-cpp's libggml-cpu-<variant>.so with the best
// score here), into build-cpu/lib/libggml-cpu-<variant>.so, linked against the PREBUILT libggml-base.
// Why: the prebuilt variants come from an older compiler that keeps tinyBLAS's f16 accumulators on
// the stack, which made f16 matrix products (an image encoder's, an f16 model's) ~1.7× slower than
// llama.cpp built here. The engine loads this file in place of the prebuilt variant when the stamp
// (.built) names the prebuilt folder it loads and ggml chose the same variant on the running CPU
// (daemon/src/engine/native.ts, native/src/Library.cpp). Needs cmake (only to
// configure: the compile commands are run here, two at a time); without cmake, or on a machine with
// no prebuilt CPU variants, it is skipped and the prebuilt backend is used. Run by build.mjs.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { commit, extract, inParallel, llamaScopes, run } from "./bundle.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const build = path.join(here, "build-cpu");
const srcDir = path.join(build, "src");
const cmakeDir = path.join(build, "cmake");
const outDir = path.join(build, "lib");
const started = Date.now();

/** node-llama-cpp's prebuilt CPU folder for this platform (bins/linux-x64), if installed. */
function prebuiltCpuDir() {
  const name = `${process.platform}-${os.arch()}`;
  return llamaScopes(here).map((scope) => path.join(scope, name, "bins", name)).find((dir) => fs.existsSync(dir));
}

/** The variant ggml would load here: the prebuilt libggml-cpu-<variant>.so whose ggml_backend_score is highest. */
function bestVariant(dir) {
  const files = fs.readdirSync(dir).filter((f) => /^libggml-cpu-.+\.so$/.test(f));
  if (files.length === 0) return undefined;
  fs.mkdirSync(build, { recursive: true });
  const probe = path.join(build, "score");
  const source = `#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    void* h = dlopen(argv[i], RTLD_NOW | RTLD_LOCAL);
    int (*score)(void) = h ? (int (*)(void))dlsym(h, "ggml_backend_score") : 0;
    printf("%d\\n", score ? score() : 0);
  }
  return 0;
}
`;
  execFileSync("gcc", ["-x", "c", "-", "-o", probe, "-ldl"], { input: source, stdio: ["pipe", "ignore", "pipe"], env: toolEnv });
  const scores = execFileSync(probe, files.map((f) => path.join(dir, f)), { encoding: "utf8" }).trim().split("\n").map(Number);
  fs.rmSync(probe, { force: true });
  let best;
  files.forEach((f, i) => {
    if ((scores[i] ?? 0) > 0 && (!best || scores[i] > best.score)) best = { name: f.replace(/^libggml-cpu-|\.so$/g, ""), score: scores[i] };
  });
  return best?.name;
}

/** The compile commands of one variant's sources (its own and its feature probe), from cmake's configure. */
function compileCommands(variant) {
  const flags = [
    "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_NATIVE=OFF", "-DGGML_OPENMP=OFF", "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_COMMON=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_CURL=OFF",
  ];
  fs.rmSync(cmakeDir, { recursive: true, force: true });
  // The variant's own flags only (a CFLAGS=-march=native from the environment would make it crash
  // on another CPU that its score still accepts), the compilers the link uses, Makefiles' layout.
  const tools = ["-G", "Unix Makefiles", "-DCMAKE_C_COMPILER=gcc", "-DCMAKE_CXX_COMPILER=g++", "-DCMAKE_C_FLAGS=", "-DCMAKE_CXX_FLAGS="];
  execFileSync("cmake", ["-S", srcDir, "-B", cmakeDir, ...tools, ...flags], { stdio: ["ignore", "ignore", "pipe"], env: toolEnv });
  const all = JSON.parse(fs.readFileSync(path.join(cmakeDir, "compile_commands.json"), "utf8"));
  const mine = new RegExp(`/ggml-cpu-${variant.replace(/[.]/g, "\\.")}(-feats)?\\.dir/`);
  return all
    .filter((e) => mine.test(e.output ?? e.command))
    .map((e) => ({ dir: e.directory, command: e.command, obj: path.resolve(e.directory, e.output ?? /-o (\S+)/.exec(e.command)[1]) }));
}

// The compilers run without the caller's flags: only the variant's own go into the build.
const toolEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !["CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "CC", "CXX", "CMAKE_GENERATOR"].includes(k)));
const stamp = path.join(outDir, ".built");
/** No built backend: nothing older than this install may stay for the engine to load. */
const none = () => fs.rmSync(outDir, { recursive: true, force: true });

if (process.platform !== "linux") process.exit(0);
const prebuilt = prebuiltCpuDir();
if (!prebuilt) {
  none();
  process.exit(0);
}
if (spawnSync("cmake", ["--version"]).status !== 0) {
  none();
  console.error("native: cmake is missing, so the prebuilt CPU backend is used (f16 matrix products, such as image encoding, ~1.7× slower); install cmake and run npm ci again to build it here.");
  process.exit(0);
}
try {
  const variant = bestVariant(prebuilt);
  if (!variant) {
    none();
    process.exit(0);
  }
  const name = `libggml-cpu-${variant}.so`;
  const out = path.join(outDir, name);
  // The stamp names the commit, the variant and the prebuilt folder the file was linked against (the engine checks the folder).
  const key = `${commit} ${variant} ${prebuilt}`;
  if (fs.existsSync(out) && fs.existsSync(stamp) && fs.readFileSync(stamp, "utf8") === key) process.exit(0);
  none();
  extract(srcDir, ["CMakeLists.txt", "LICENSE", "cmake", "ggml", "include", "src", "vendor"]);
  const units = compileCommands(variant);
  if (units.length === 0) throw new Error(`cmake defined no sources for the ${variant} CPU variant`);
  for (const u of units) fs.mkdirSync(path.dirname(u.obj), { recursive: true });
  await inParallel(units.map((u) => () => run(u.command, u.dir)));
  fs.mkdirSync(outDir, { recursive: true });
  // Against the prebuilt libggml-base (same soname as the one the engine has loaded), not cmake's
  // own; written aside and renamed, so the folder never holds half a library.
  const tmp = path.join(outDir, `.${name}.tmp`);
  execFileSync("g++", ["-shared", "-o", tmp, ...units.map((u) => u.obj), `-L${prebuilt}`, "-l:libggml-base.so", `-Wl,-rpath,${prebuilt}`, "-Wl,--no-undefined", "-lpthread"], { stdio: ["ignore", "ignore", "pipe"], env: toolEnv });
  fs.renameSync(tmp, out);
  fs.writeFileSync(stamp, key);
  for (const d of [cmakeDir, srcDir]) fs.rmSync(d, { recursive: true, force: true });
  console.error(`native: CPU backend (${variant}) built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} catch (err) {
  process.stderr.write(String(err.stderr ?? err.message ?? err) + "\n");
  console.error("native: the CPU backend did not build (see above); the prebuilt one is used (f16 matrix products, such as image encoding, ~1.7× slower).");
  none();
}
