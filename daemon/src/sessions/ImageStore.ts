import { createHash } from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fail } from "@nanollm/shared";
import type { ImageBytes } from "./Journal.js";

/**
 * Images of every session, stored once by the SHA-256 of their bytes (DATA_DIR/images/<hash>), so a
 * restart, an eviction or a re-prefill brings the exact same image back; in memory without a data
 * folder. Files are written whole (temporary name, then rename) before the turn that uses them is
 * journaled.
 */
export class ImageStore implements ImageBytes {
  private readonly memory = new Map<string, Uint8Array>();
  private readonly dir: string | undefined;

  constructor(dataDir: string | undefined) {
    if (dataDir) {
      this.dir = path.join(dataDir, "images");
      fs.mkdirSync(this.dir, { recursive: true });
      for (const f of fs.readdirSync(this.dir)) if (f.endsWith(".tmp")) fs.rmSync(path.join(this.dir, f), { force: true });
    }
  }

  static hash(bytes: Uint8Array): string {
    return createHash("sha256").update(bytes).digest("hex");
  }

  /** Stores `bytes` under their hash (`sha` when the caller hashed them already). */
  async put(bytes: Uint8Array, sha = ImageStore.hash(bytes)): Promise<string> {
    if (!this.dir) {
      this.memory.set(sha, bytes);
      return sha;
    }
    const file = path.join(this.dir, sha);
    if (fs.existsSync(file)) return sha;
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await fsp.writeFile(tmp, bytes);
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw fail.unavailable(`The image could not be stored (${(err as Error).message}); free space in the data folder and retry.`);
    }
    return sha;
  }

  async get(sha: string): Promise<Uint8Array> {
    const inMemory = this.memory.get(sha);
    if (inMemory) return inMemory;
    if (!/^[0-9a-f]{64}$/.test(sha) || !this.dir) throw fail.notFound(`Image ${sha.slice(0, 12)} is not stored; send it again.`);
    try {
      const bytes = await fsp.readFile(path.join(this.dir, sha));
      if (ImageStore.hash(bytes) !== sha) throw new Error("its bytes do not match its hash");
      return bytes;
    } catch (err) {
      throw fail.notFound(`Image ${sha.slice(0, 12)} could not be read back (${(err as Error).message}); send it again.`);
    }
  }
}
