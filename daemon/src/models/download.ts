import fs from "node:fs";
import fsp from "node:fs/promises";
import { fail } from "@nanollm/shared";
import { sha256File } from "../sha256File.js";

export interface DownloadOptions {
  /** How long the server may take to answer, and to send the next bytes, before we give up. */
  timeoutMs: number;
  /** Sent with each request (a Hugging Face token). */
  headers?: Record<string, string>;
  /** The file's SHA-256 when the hub gives one; else taken from an X-Linked-ETag header, if any. */
  sha256?: string;
  /** What the user can do instead when the server cannot be reached, in the words of their command. */
  offlineHint: string;
  /** Bytes so far, and the total when known. */
  onProgress?: (done: number, total: number | undefined) => void;
}

/**
 * Fetches `url` into `dest`: into DEST.part first, which a later call resumes with an HTTP Range
 * request, then checked against the SHA-256 the hub gave (a mismatch deletes it) and renamed. Every
 * wait is bounded: no answer, or no bytes, for `timeoutMs` fails with one sentence. (node-llama-cpp's
 * downloader waits forever offline and cannot check a hash, hence this one.)
 */
export async function download(url: string, dest: string, opts: DownloadOptions): Promise<void> {
  const part = `${dest}.part`;
  const have = fs.statSync(part, { throwIfNoEntry: false })?.size ?? 0;
  const watchdog = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let waitingFor = "no answer";
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => watchdog.abort(), opts.timeoutMs);
  };
  arm();
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: { ...opts.headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) }, signal: watchdog.signal, redirect: "follow" });
    } catch (err) {
      throw unreachable(url, err, watchdog.signal.aborted, opts);
    }
    // 416: the part already holds every byte (an earlier run was cut after the last one).
    const complete = res.status === 416 && have > 0;
    if (!res.ok && !complete) throw httpError(url, res.status);
    const resumed = res.status === 206;
    const sha256 = opts.sha256 ?? linkedEtag(res);
    const total = complete ? have : (resumed ? have : 0) + Number(res.headers.get("content-length") ?? NaN);
    if (!complete && res.body) {
      const out = fs.createWriteStream(part, { flags: resumed ? "a" : "w" });
      let done = resumed ? have : 0;
      waitingFor = "no data";
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          arm();
          done += chunk.length;
          if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
          opts.onProgress?.(done, Number.isFinite(total) ? total : undefined);
        }
      } catch (err) {
        throw fail.unavailable(
          watchdog.signal.aborted
            ? `The download of ${url} stalled (${waitingFor} for ${opts.timeoutMs / 1000} s) after ${done} bytes; run the command again to resume it.`
            : `The download of ${url} was cut after ${done} bytes (${causeOf(err)}); run the command again to resume it.`,
        );
      } finally {
        await new Promise<void>((resolve) => out.end(() => resolve()));
      }
      if (Number.isFinite(total) && done < total) throw fail.unavailable(`The download of ${url} was cut after ${done} of ${total} bytes; run the command again to resume it.`);
    }
    clearTimeout(timer);
    if (sha256) {
      const got = await sha256File(part);
      if (got !== sha256.toLowerCase()) {
        await fsp.rm(part, { force: true });
        throw fail.invalid(`The download of ${url} does not match the checksum its hub gives (SHA-256 ${sha256.slice(0, 12)}…, got ${got.slice(0, 12)}…), so it was deleted; run the command again, and if it fails the same way, tell the model's publisher.`);
      }
    }
    await fsp.rename(part, dest);
  } finally {
    clearTimeout(timer);
  }
}

/** Fetches JSON (a hub's API) with the same bounded waits. */
export async function fetchJson(url: string, opts: Pick<DownloadOptions, "timeoutMs" | "headers" | "offlineHint">): Promise<unknown> {
  const signal = AbortSignal.timeout(opts.timeoutMs);
  let res: Response;
  try {
    res = await fetch(url, { headers: opts.headers, signal });
  } catch (err) {
    throw unreachable(url, err, signal.aborted, opts);
  }
  if (!res.ok) throw httpError(url, res.status);
  try {
    return await res.json();
  } catch (err) {
    throw fail.unavailable(`${new URL(url).host} answered ${url} with something other than JSON (${causeOf(err)}); check the hub address (NANOLLM_HF_ENDPOINT).`);
  }
}

/** A Hugging Face LFS file's SHA-256, which its resolve URL names in X-Linked-ETag. */
function linkedEtag(res: Response): string | undefined {
  const tag = res.headers.get("x-linked-etag")?.replace(/^W\//, "").replace(/"/g, "");
  return tag && /^[0-9a-f]{64}$/i.test(tag) ? tag : undefined;
}

function unreachable(url: string, err: unknown, timedOut: boolean, opts: Pick<DownloadOptions, "timeoutMs" | "offlineHint">) {
  const why = timedOut ? `no answer within ${opts.timeoutMs / 1000} s` : causeOf(err);
  return fail.unavailable(`Cannot reach ${new URL(url).host} to fetch ${url} (${why}); ${opts.offlineHint}`);
}

function httpError(url: string, status: number) {
  if (status === 401 || status === 403) return fail.denied(`${url} needs permission (HTTP ${status}); for a gated Hugging Face model, accept its terms on the website and set HF_TOKEN to one of your tokens.`);
  if (status === 404) return fail.notFound(`${url} does not exist (HTTP 404); check the model's name.`);
  return fail.unavailable(`${new URL(url).host} answered ${url} with HTTP ${status}; try again later.`);
}

function causeOf(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message;
}
