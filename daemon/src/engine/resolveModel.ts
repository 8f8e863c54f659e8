import fs from "node:fs";
import path from "node:path";
import { fail, readEnv } from "@nanollm/shared";
import { download } from "../models/download.js";
import { cachedModel, chooseModel, chooseProjector, listRepo, parseHf, repoDir } from "../models/huggingFace.js";

export interface ResolveOptions {
  /** How long the model's server may take to answer (or to send more bytes) before we give up (offline). */
  connectTimeoutMs: number;
  /** What the user can do instead when the download fails, in the words of their command. */
  offlineHint: string;
}

/** Whether a --model value is fetched (hf: URI or URL) rather than a local file. */
export function isRemoteModel(pathOrUri: string): boolean {
  return /^(hf:|https?:\/\/)/.test(pathOrUri);
}

/**
 * A local path stays as it is; an `hf:` URI (or URL) is fetched once into `modelsDir` and reused
 * after that, found without the network. An hf: repository's files go to a folder of their own,
 * with its image projector (mmproj*.gguf) when it ships one, where the model finds it.
 */
export async function resolveModel(pathOrUri: string, modelsDir: string, opts: ResolveOptions): Promise<string> {
  if (!isRemoteModel(pathOrUri)) return pathOrUri;
  return pathOrUri.startsWith("hf:") ? fetchHf(pathOrUri, modelsDir, opts) : fetchUrl(pathOrUri, modelsDir, opts);
}

async function fetchHf(uri: string, modelsDir: string, opts: ResolveOptions): Promise<string> {
  const ref = parseHf(uri);
  const cached = cachedModel(modelsDir, ref);
  if (cached) return cached;
  const env = readEnv();
  const headers: Record<string, string> = env.hfToken ? { authorization: `Bearer ${env.hfToken}` } : {};
  const common = { timeoutMs: opts.connectTimeoutMs, headers, offlineHint: opts.offlineHint };
  const files = await listRepo(env.hfEndpoint, ref, common);
  const paths = files.map((f) => f.path);
  const model = chooseModel(ref, paths);
  const projector = chooseProjector(paths);
  const dir = repoDir(modelsDir, ref);
  fs.mkdirSync(dir, { recursive: true });
  // The projector first: a model file in the folder is taken as complete, with what lies beside it.
  for (const file of [projector, model]) {
    if (!file) continue;
    const dest = path.join(dir, path.basename(file));
    if (fs.existsSync(dest)) continue;
    const url = `${env.hfEndpoint.replace(/\/+$/, "")}/${ref.repo}/resolve/main/${file.split("/").map(encodeURIComponent).join("/")}`;
    await download(url, dest, { ...common, sha256: files.find((f) => f.path === file)?.sha256, onProgress: progress(path.basename(file)) });
  }
  return path.join(dir, path.basename(model));
}

async function fetchUrl(url: string, modelsDir: string, opts: ResolveOptions): Promise<string> {
  const name = decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  if (!/\.gguf$/i.test(name)) throw fail.invalid(`${url} does not name a .gguf file; give the URL of a GGUF model file.`);
  const dest = path.join(modelsDir, name);
  if (fs.existsSync(dest)) return dest;
  fs.mkdirSync(modelsDir, { recursive: true });
  await download(url, dest, { timeoutMs: opts.connectTimeoutMs, offlineHint: opts.offlineHint, onProgress: progress(name) });
  return dest;
}

/** A progress line on a terminal's stderr, redrawn at most every 200 ms; nothing in logs. */
function progress(name: string): ((done: number, total: number | undefined) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let shown = 0;
  return (done, total) => {
    const now = Date.now();
    if (now - shown < 200 && done !== total) return;
    shown = now;
    const mib = (n: number) => (n / 2 ** 20).toFixed(1);
    process.stderr.write(`\rfetching ${name}: ${mib(done)}${total ? ` of ${mib(total)} MiB (${Math.floor((done * 100) / total)}%)` : " MiB"}${done === total ? "\n" : ""}`);
  };
}
