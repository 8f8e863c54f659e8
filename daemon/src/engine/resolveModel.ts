import fs from "node:fs";
import { resolveModelFile } from "node-llama-cpp";
import { fail } from "@nanollm/shared";

export interface ResolveOptions {
  /** How long the model's server may take to answer at all before we give up (offline). */
  connectTimeoutMs: number;
  /** What the user can do instead when the download fails, in the words of their command. */
  offlineHint: string;
}

/** Whether a --model value is fetched (hf: URI or URL) rather than a local file. */
export function isRemoteModel(pathOrUri: string): boolean {
  return /^(hf:|https?:\/\/)/.test(pathOrUri);
}

/**
 * A local path stays as it is; an `hf:` URI (or URL) is fetched once into `modelsDir` with
 * node-llama-cpp's own downloader, showing its progress bar, and reused after that. Offline, the
 * downloader waits forever ("Gathering information"), so the server is asked first, with a limit.
 */
export async function resolveModel(pathOrUri: string, modelsDir: string, opts: ResolveOptions): Promise<string> {
  if (!isRemoteModel(pathOrUri)) return pathOrUri;
  const cached = await cachedFile(pathOrUri, modelsDir);
  if (cached) return cached;
  await reachable(pathOrUri, opts);
  fs.mkdirSync(modelsDir, { recursive: true });
  try {
    return await resolveModelFile(pathOrUri, { directory: modelsDir, cli: process.stderr.isTTY === true });
  } catch (err) {
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw fail.unavailable(`Could not download ${pathOrUri} (${why}); ${opts.offlineHint}`);
  }
}

/** A model fetched before, found without the network (node-llama-cpp knows its file names). */
async function cachedFile(uri: string, modelsDir: string): Promise<string | undefined> {
  if (!fs.existsSync(modelsDir)) return undefined;
  return resolveModelFile(uri, { directory: modelsDir, download: false, cli: false }).catch(() => undefined);
}

/** Fails in bounded time, with one sentence, when the model's server does not answer. */
async function reachable(uri: string, opts: ResolveOptions): Promise<void> {
  const url = uri.startsWith("hf:") ? (process.env.HF_ENDPOINT ?? "https://huggingface.co/") : uri;
  try {
    await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(opts.connectTimeoutMs) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === "TimeoutError" ? `no answer within ${opts.connectTimeoutMs / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    throw fail.unavailable(`Cannot reach ${new URL(url).host} to fetch ${uri} (${why}); ${opts.offlineHint}`);
  }
}
