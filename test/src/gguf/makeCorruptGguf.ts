// Broken GGUF files for error-path tests (loader must fail cleanly, not crash).
import { readFileSync, writeFileSync } from "node:fs";

/**
 * Copies `srcPath` to `destPath` keeping only the first `keep` bytes: a fraction in (0, 1)
 * of the source size, or an absolute byte count when >= 1. Default 0.5 (cuts tensor data;
 * a tiny value such as 64 cuts the header/metadata instead).
 */
export function writeTruncatedGguf(srcPath: string, destPath: string, keep = 0.5): number {
    const src = readFileSync(srcPath);
    const n = keep < 1 ? Math.floor(src.length * keep) : Math.min(Math.floor(keep), src.length - 1);
    writeFileSync(destPath, src.subarray(0, n));
    return n;
}

/**
 * Writes a file that is not GGUF at all: `magic` (default "GGUX") followed by a plausible
 * v3 header, or a copy of `srcPath` with its first 4 bytes replaced when given.
 */
export function writeBadMagicGguf(destPath: string, opts: { srcPath?: string; magic?: string } = {}): void {
    const magic = Buffer.from(opts.magic ?? "GGUX", "latin1");
    if (magic.length !== 4) throw new Error("magic must be 4 bytes");
    let out: Buffer;
    if (opts.srcPath !== undefined) {
        out = Buffer.from(readFileSync(opts.srcPath));
    } else {
        out = Buffer.alloc(64);
        out.writeUInt32LE(3, 4);
    }
    magic.copy(out, 0);
    writeFileSync(destPath, out);
}
