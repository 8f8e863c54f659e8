import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";

/** What a client may attach: the daemon's own limits (the daemon refuses past them too). */
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
export const MAX_IMAGES = 8;
const DOWNLOAD_TIMEOUT_MS = 15_000;
const IMAGE_EXT = /\.(jpe?g|png|bmp|gif|webp)$/i;

export interface Attachment {
  name: string;
  data: Uint8Array;
  /** Where in the message's text it stands, in characters (0: before the text). */
  offset?: number;
}

/** A line split into its text and the image paths or URLs it names (as the reference's chat does). */
export interface ParsedLine {
  text: string;
  sources: string[];
  /** Where each source stood in `text`, in characters (Unicode code points): before the word that followed it. */
  offsets: number[];
}

/**
 * Finds image file names and http(s) URLs anywhere in a typed line (`photo.jpg what is this?`),
 * quoted or not; the rest is the message, its words joined by single spaces, and each image stands
 * where it was typed (`compare a.jpg with b.jpg`). A word counts as an image when it ends in an
 * image extension or is an http(s) URL ending in one.
 */
export function parseImageLine(line: string, isFile: (source: string) => boolean = (source) => existsSync(localPath(source))): ParsedLine {
  const sources: string[] = [];
  const words: string[] = [];
  /** For each source: the word it stands before, or the word whose trailing punctuation (`n` characters) it stands before. */
  const anchors: { word: number; punctuation?: number }[] = [];
  // Words: quoted, or runs of non-spaces where "\ " is a space (paths dropped into a terminal).
  for (const m of line.matchAll(/(["'])([^"']+?)\1|((?:\\\s|\S)+)/g)) {
    const word = m[2] ?? (m[3] ?? "").replace(/\\(\s)/g, "$1");
    let candidate = word.startsWith("file://") ? decodeURIComponent(word.slice("file://".length)) : word;
    // Punctuation typed after a file name (`b.png?`) belongs to the sentence, not the name, when
    // that file is there; otherwise the word is prose (`rename it to final.png.`).
    const trailing = m[3] !== undefined && !isUrl(candidate) ? (/\.(?:jpe?g|png|bmp|gif|webp)([?!.,;:)]+)$/i.exec(candidate)?.[1] ?? "") : "";
    if (trailing && !isFile(candidate.slice(0, -trailing.length))) {
      words.push(m[0]);
      continue;
    }
    candidate = candidate.slice(0, candidate.length - trailing.length);
    if (IMAGE_EXT.test(candidate.replace(/[?#].*$/, "")) && (isUrl(candidate) || !/^[a-z]+:\/\//i.test(candidate))) {
      sources.push(candidate);
      // After a leading image (`cat.png: what is it?`) it was only a separator.
      if (trailing && words.length > 0) {
        words[words.length - 1] += trailing;
        anchors.push({ word: words.length - 1, punctuation: [...trailing].length });
      } else {
        anchors.push({ word: words.length });
      }
    } else {
      words.push(m[0]);
    }
  }
  const text = words.join(" ");
  const starts: number[] = [];
  let at = 0;
  for (const w of words) {
    starts.push(at);
    at += [...w].length + 1;
  }
  const offsets = anchors.map(({ word, punctuation }) =>
    punctuation === undefined ? (starts[word] ?? [...text].length) : (starts[word] ?? 0) + [...(words[word] ?? "")].length - punctuation,
  );
  return { text, sources, offsets };
}

const isUrl = (s: string) => /^https?:\/\//i.test(s);

/** The text as the transcript shows it: `[name]` where each image inside it stands (none at 0). */
export function withImageMarks(text: string, images: readonly Attachment[]): string {
  const points = [...text];
  const inside = images.filter((a) => (a.offset ?? 0) > 0).sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0));
  let out = "";
  let from = 0;
  for (const a of inside) {
    const at = Math.min(a.offset ?? 0, points.length);
    const before = points.slice(from, at).join("");
    out += `${before}${before && !before.endsWith(" ") ? " " : ""}[${a.name}]${/[\p{L}\p{N}]/u.test(points[at] ?? "") ? " " : ""}`;
    from = at;
  }
  return out + points.slice(from).join("");
}

/** A typed path as a file name: `~/` is the home folder, a relative one is from `cwd`. */
function localPath(source: string, cwd = process.cwd()): string {
  return path.resolve(cwd, source.replace(/^~(?=\/)/, process.env.HOME ?? "~"));
}

/** Reads a file or downloads a URL (size-capped, time-bounded); one sentence when it cannot. */
export async function readImage(source: string, cwd = process.cwd()): Promise<Attachment> {
  if (isUrl(source)) return download(source);
  const file = localPath(source, cwd);
  let data: Buffer;
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new Error(`${source} is not a file`);
    if (st.size > MAX_IMAGE_BYTES) throw new Error(`${source} is ${st.size} bytes, more than the limit of ${MAX_IMAGE_BYTES}`);
    data = await fs.readFile(file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(e.code === "ENOENT" ? `No image file ${source}; check the path (nothing was sent).` : `${e.message.replace(/\.$/, "")}; nothing was sent.`);
  }
  return { name: path.basename(file), data: new Uint8Array(data) };
}

async function download(url: string): Promise<Attachment> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(DOWNLOAD_TIMEOUT_MS) });
  } catch (err) {
    const why = (err as Error).name === "TimeoutError" ? `no answer in ${DOWNLOAD_TIMEOUT_MS / 1000} s` : ((err as { cause?: Error }).cause?.message ?? (err as Error).message);
    throw new Error(`Could not download ${url} (${why}); check the address and the network, or save the image and give its path.`);
  }
  if (!res.ok) throw new Error(`Could not download ${url} (HTTP ${res.status}); check the address.`);
  const declared = Number(res.headers.get("content-length") ?? 0);
  if (declared > MAX_IMAGE_BYTES) throw new Error(`${url} is ${declared} bytes, more than the limit of ${MAX_IMAGE_BYTES}; use a smaller image.`);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > MAX_IMAGE_BYTES) throw new Error(`${url} is more than the limit of ${MAX_IMAGE_BYTES} bytes; use a smaller image.`);
    chunks.push(chunk);
  }
  const data = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { name: decodeURIComponent(new URL(url).pathname.split("/").pop() || "image"), data };
}

/** Width × height of a PNG, JPEG, GIF or BMP from its header (for the transcript), or undefined. */
export function imageSize(data: Uint8Array): { width: number; height: number } | undefined {
  const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (b.length > 24 && b.readUInt32BE(0) === 0x89504e47) return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  if (b.length > 10 && b.toString("latin1", 0, 3) === "GIF") return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
  if (b.length > 26 && b.toString("latin1", 0, 2) === "BM") return { width: b.readInt32LE(18), height: Math.abs(b.readInt32LE(22)) };
  if (b.length > 4 && b[0] === 0xff && b[1] === 0xd8) {
    for (let i = 2; i + 9 < b.length; ) {
      if (b[i] !== 0xff) return undefined;
      const marker = b[i + 1]!;
      const len = b.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return { width: b.readUInt16BE(i + 7), height: b.readUInt16BE(i + 5) };
      i += 2 + len;
    }
  }
  return undefined;
}

/** "photo.jpg, 640×480, 52 KB" for the transcript. */
export function describeImage(a: Attachment): string {
  const size = imageSize(a.data);
  const kb = a.data.length < 1024 ? `${a.data.length} B` : `${Math.round(a.data.length / 1024)} KB`;
  return [a.name, size && `${size.width}×${size.height}`, kb].filter(Boolean).join(", ");
}
