import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const IMAGE = /\.(png|jpe?g|gif|webp|bmp|tiff?)$/i;

/**
 * The path, when the whole line names an existing image file (typed, or dropped into the
 * terminal: quoted, or with backslash-escaped spaces). The reference sends such a line as an
 * image message; until nanollm takes images, the caller says so instead of sending the path.
 */
export function imagePathOf(line: string): string | undefined {
  let p = line.trim();
  if (p.includes("\n") || !IMAGE.test(p.replace(/['"]$/, ""))) return undefined;
  const quoted = /^(['"])(.*)\1$/.exec(p);
  p = quoted ? quoted[2]! : p.replace(/\\(.)/g, "$1");
  p = p.replace(/^~(?=$|\/)/, os.homedir());
  if (p.startsWith("file://")) p = decodeURIComponent(p.slice("file://".length));
  try {
    return fs.statSync(p).isFile() ? path.resolve(p) : undefined;
  } catch {
    return undefined;
  }
}
