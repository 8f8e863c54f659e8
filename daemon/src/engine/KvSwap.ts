import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { LlamaContextSequence } from "node-llama-cpp";

/**
 * Sequence states parked on disk: when a session's sequence is lent to another session, its KV
 * cache is saved here and loaded back on its next turn, bit for bit, instead of re-prefilled.
 * A sidecar names the model file (path, size, mtime) so a state never loads into another model.
 */
export class KvSwap {
  constructor(
    private readonly dir: string,
    private readonly modelId: string,
    private readonly log: (line: string) => void,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Identifies a model file's exact contents cheaply. */
  static modelId(file: string): string {
    const st = fs.statSync(file);
    return `${path.resolve(file)}:${st.size}:${st.mtimeMs}`;
  }

  async save(owner: string, seq: LlamaContextSequence): Promise<void> {
    if (seq.contextTokens.length === 0) return;
    const file = this.file(owner);
    try {
      await seq.saveStateToFile(`${file}.tmp`);
      await fsp.rename(`${file}.tmp`, file);
      await fsp.writeFile(`${file}.json`, JSON.stringify({ model: this.modelId, tokens: seq.contextTokens.length }));
    } catch (err) {
      this.log(`could not save the KV cache of session ${owner} (${(err as Error).message}); it will be re-prefilled`);
      await this.drop(owner);
    }
  }

  /** Loads the owner's parked state into an empty sequence; false when there is none to load. */
  async load(owner: string, seq: LlamaContextSequence): Promise<boolean> {
    const file = this.file(owner);
    if (!this.matches(file)) return false;
    try {
      await seq.loadStateFromFile(file, { acceptRisk: true });
      return true;
    } catch (err) {
      this.log(`could not load the KV cache of session ${owner} (${(err as Error).message}); re-prefilling it`);
      await seq.clearHistory();
      return false;
    } finally {
      await this.drop(owner);
    }
  }

  async drop(owner: string): Promise<void> {
    const file = this.file(owner);
    await Promise.all([fsp.rm(file, { force: true }), fsp.rm(`${file}.json`, { force: true }), fsp.rm(`${file}.tmp`, { force: true })]);
  }

  private matches(file: string): boolean {
    try {
      const side = JSON.parse(fs.readFileSync(`${file}.json`, "utf8")) as { model?: string };
      return side.model === this.modelId && fs.existsSync(file);
    } catch {
      return false;
    }
  }

  private file(owner: string): string {
    return path.join(this.dir, `${owner.replace(/[^\w.-]/g, "_")}.kv`);
  }
}
