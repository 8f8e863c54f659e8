import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fail } from "@nanollm/shared";

/** One issued token as the file keeps it: its SHA-256, never the token itself. */
export interface TokenEntry {
  name: string;
  admin: boolean;
  /** Hex SHA-256 of the token. Tokens are 256 random bits, so a plain hash cannot be brute-forced. */
  sha256: string;
  createdAt: number;
}

interface FileShape {
  version: 1;
  tokens: TokenEntry[];
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** The SHA-256 of a token, as raw bytes. */
export function tokenDigest(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/**
 * The daemon's tokens file (DATA_DIR/tokens.json, mode 0600). The daemon re-reads it whenever it
 * changes on disk, so `nanollm tokens revoke` takes effect on the next call without a restart.
 */
export class TokenFile {
  private cache: { stamp: string; entries: TokenEntry[] } | undefined;

  constructor(readonly file: string) {}

  /** The current tokens; an absent file means none. */
  entries(): readonly TokenEntry[] {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(this.file);
    } catch {
      return [];
    }
    const stamp = `${stat.ino}:${stat.size}:${stat.mtimeMs}`;
    if (this.cache?.stamp === stamp) return this.cache.entries;
    if ((stat.mode & 0o077) !== 0) throw fail.precondition(`${this.file} is readable by other users; run \`chmod 600 ${this.file}\`.`);
    this.cache = { stamp, entries: this.read().tokens };
    return this.cache.entries;
  }

  /** Issues a token for `name`; the token is returned once and only its hash is kept. */
  add(name: string, admin: boolean): string {
    if (!NAME.test(name)) throw fail.invalid(`"${name}" is not a usable token name; use letters, digits, '.', '_', '@' or '-' (at most 64).`);
    const shape = this.read();
    if (shape.tokens.some((t) => t.name === name)) throw fail.invalid(`A token named "${name}" exists already; revoke it first with \`nanollm tokens revoke ${name}\`.`);
    const token = `nllm_${randomBytes(32).toString("base64url")}`;
    shape.tokens.push({ name, admin, sha256: tokenDigest(token).toString("hex"), createdAt: Date.now() });
    this.write(shape);
    return token;
  }

  /** Removes the token named `name`; false when there is none. */
  revoke(name: string): boolean {
    const shape = this.read();
    const kept = shape.tokens.filter((t) => t.name !== name);
    if (kept.length === shape.tokens.length) return false;
    this.write({ ...shape, tokens: kept });
    return true;
  }

  private read(): FileShape {
    let text: string;
    try {
      text = fs.readFileSync(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, tokens: [] };
      throw err;
    }
    try {
      const shape = JSON.parse(text) as FileShape;
      if (shape.version !== 1 || !Array.isArray(shape.tokens) || !shape.tokens.every((t) => typeof t.name === "string" && /^[0-9a-f]{64}$/.test(t.sha256))) throw new Error("unexpected shape");
      return shape;
    } catch (err) {
      throw fail.precondition(`${this.file} is not a nanollm tokens file (${(err as Error).message}); move it away and add the tokens again.`);
    }
  }

  private write(shape: FileShape): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(shape, null, 2)}\n`, { mode: 0o600 });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, this.file);
  }
}
