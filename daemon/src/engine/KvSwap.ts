import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { ContextLoop } from "./ContextLoop.js";
import { sha256File } from "../sha256File.js";

/** Bumped whenever what a state file holds changes meaning. */
const FORMAT = 1;

interface Sidecar {
  format: number;
  model: string;
  tokens: number;
  bytes: number;
  sha256: string;
}

/**
 * Sequence states parked on disk: when a session's sequence is lent to another session, its KV
 * cache is saved here and loaded back on its next turn, bit for bit, instead of re-prefilled.
 * A sidecar names the model file (path, size, mtime), the token count, the size and a SHA-256 of
 * the state: a file that does not verify (truncated, edited, another model's) is discarded and the
 * session re-prefilled, never handed to llama.cpp, which trusts what it reads.
 */
export class KvSwap {
  constructor(
    private readonly dir: string,
    private readonly modelId: string,
    private readonly log: (line: string) => void,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    // A crash mid-save leaves a temporary file that nothing will finish.
    for (const f of fs.readdirSync(dir)) if (f.endsWith(".tmp")) fs.rmSync(path.join(dir, f), { force: true });
  }

  /** Identifies a model file's exact contents cheaply. */
  static modelId(file: string): string {
    const st = fs.statSync(file);
    return `${path.resolve(file)}:${st.size}:${st.mtimeMs}`;
  }

  async save(owner: string, loop: ContextLoop, seq: number): Promise<void> {
    const tokens = loop.cachedLength(seq);
    if (tokens === 0) return;
    const file = this.file(owner);
    try {
      const bytes = await loop.save(seq, `${file}.tmp`);
      const sidecar: Sidecar = { format: FORMAT, model: this.modelId, tokens, bytes, sha256: await sha256File(`${file}.tmp`) };
      await fsp.rm(`${file}.json`, { force: true });
      await fsp.rename(`${file}.tmp`, file);
      await fsp.writeFile(`${file}.json.tmp`, JSON.stringify(sidecar));
      await fsp.rename(`${file}.json.tmp`, `${file}.json`);
    } catch (err) {
      this.log(`could not save the KV cache of session ${owner} (${(err as Error).message}); it will be re-prefilled`);
      await this.drop(owner);
    }
  }

  /** Loads the owner's parked state into an empty sequence; false when there is none that verifies. */
  async load(owner: string, loop: ContextLoop, seq: number): Promise<boolean> {
    const file = this.file(owner);
    try {
      const checked = await this.verify(file);
      if (checked === "absent") return false;
      if (typeof checked === "string") {
        this.log(`discarded the KV cache of session ${owner} (${checked}); re-prefilling it`);
        return false;
      }
      const tokens = await loop.load(seq, file);
      if (tokens.length !== checked.tokens) throw new Error(`it held ${tokens.length} tokens, not ${checked.tokens}`);
      return true;
    } catch (err) {
      this.log(`could not load the KV cache of session ${owner} (${(err as Error).message}); re-prefilling it`);
      await loop.clear(seq);
      return false;
    } finally {
      await this.drop(owner);
    }
  }

  async drop(owner: string): Promise<void> {
    const file = this.file(owner);
    await Promise.all([file, `${file}.json`, `${file}.tmp`, `${file}.json.tmp`].map((f) => fsp.rm(f, { force: true })));
  }

  /** The description of a parked state that verifies; else why it must not be loaded, or "absent". */
  private async verify(file: string): Promise<Sidecar | string> {
    if (!fs.existsSync(`${file}.json`) && !fs.existsSync(file)) return "absent";
    const side = this.sidecar(file);
    if (!side) return "its description is missing or unreadable";
    if (side.format !== FORMAT) return `it is of format ${String(side.format)}, not ${FORMAT}`;
    if (side.model !== this.modelId) return "it was written for another model file";
    const size = fs.existsSync(file) ? fs.statSync(file).size : -1;
    if (size !== side.bytes) return `it is ${size} bytes, not ${side.bytes}`;
    if ((await sha256File(file)) !== side.sha256) return "its checksum does not match";
    return side;
  }

  private sidecar(file: string): Sidecar | undefined {
    try {
      const s = JSON.parse(fs.readFileSync(`${file}.json`, "utf8")) as Partial<Sidecar>;
      const ok = typeof s.format === "number" && typeof s.model === "string" && Number.isInteger(s.tokens) && Number.isInteger(s.bytes) && typeof s.sha256 === "string";
      return ok ? (s as Sidecar) : undefined;
    } catch {
      return undefined;
    }
  }

  private file(owner: string): string {
    return path.join(this.dir, `${owner.replace(/[^\w.-]/g, "_")}.kv`);
  }
}
