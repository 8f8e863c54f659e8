import { execFile } from "node:child_process";
import { fail } from "@nanollm/shared";

// clip.cpp builds its graph at load (the warmup) and, on a malformed projector, crashes the process
// there: a null tensor dereferenced, or a ggml assertion on a tensor of the wrong shape. mmproj.ts
// names what a file lacks for the projector types it knows; this catches the rest by loading the
// file once in a throwaway Node process (CPU variant, no text model, graph built), so a bad file
// costs that process, never the daemon. It costs a process start and one more read of the file.

const NATIVE = new URL("./native.js", import.meta.url).href;
const PROJECTOR = new URL("./projector.js", import.meta.url).href;
const SCRIPT = `
  import { loadVariant, variantsFor } from ${JSON.stringify(NATIVE)};
  import { imageLibraryFor, mtmdAddon } from ${JSON.stringify(PROJECTOR)};
  const v = variantsFor("cpu")[0];
  if (!v) throw new Error("no CPU build of llama.cpp is installed");
  loadVariant(v);
  mtmdAddon().loadMtmd(imageLibraryFor(v));
  process.stdout.write(JSON.stringify({ why: mtmdAddon().probeProjector(process.argv[1]) }));
`;

/** Throws one sentence when clip.cpp cannot load `file`, or crashes loading it, in a separate process. */
export function probeProjector(file: string, timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    // GGML_NO_BACKTRACE: a failed ggml assertion would otherwise attach gdb to print one (slow, and it hangs under ASan).
    const env = { ...process.env, GGML_NO_BACKTRACE: "1" };
    execFile(process.execPath, ["--input-type=module", "-e", SCRIPT, file], { env, timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err && (err.signal || err.killed)) {
        const how = err.killed && err.signal === "SIGTERM" ? `took over ${timeoutMs / 1000} s` : `crashed (${err.signal})`;
        reject(fail.invalid(`The projector ${file} ${how} when llama.cpp's image loader read it in a test process, so it was not loaded; the file is malformed or made for another llama.cpp version.`));
        return;
      }
      let why: string | undefined;
      try {
        why = (JSON.parse(stdout) as { why: string }).why;
      } catch {
        const last = stderr.trim().split("\n").filter((l) => !/^\s+at /.test(l)).pop() ?? `exit code ${String(err?.code)}`;
        reject(fail.unavailable(`The projector ${file} could not be checked (${last.replace(/^\w*Error: /, "").replace(/\.$/, "")}).`));
        return;
      }
      if (why) reject(fail.invalid(`The projector ${file} could not be loaded (${why}); check that it is the mmproj file made for this model.`));
      else resolve();
    });
  });
}
