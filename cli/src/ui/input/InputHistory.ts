import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const MAX_ENTRIES = 1000;

/** $XDG_STATE_HOME/nanollm/history, or ~/.local/state/nanollm/history. */
export function defaultHistoryFile(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.XDG_STATE_HOME && path.isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : path.join(os.homedir(), ".local", "state");
  return path.join(state, "nanollm", "history");
}

/**
 * The messages typed in earlier runs, for ↑/↓. One JSON string per line in the file, so a
 * multi-line message stays one entry. A file that cannot be read or written only costs the
 * history, never the chat.
 */
export class InputHistory {
  private entries: string[] = [];
  /** Position while browsing: entries.length means "the line being typed". */
  private pos = 0;
  private draft = "";

  constructor(private readonly file: string | undefined) {
    if (file) this.entries = readEntries(file);
    this.pos = this.entries.length;
  }

  get size(): number {
    return this.entries.length;
  }

  add(message: string): void {
    this.pos = this.entries.length;
    if (message.trim() === "" || this.entries[this.entries.length - 1] === message) return;
    this.entries.push(message);
    this.pos = this.entries.length;
    if (!this.file) return;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      if (this.entries.length > 2 * MAX_ENTRIES) {
        this.entries = this.entries.slice(-MAX_ENTRIES);
        this.pos = this.entries.length;
        fs.writeFileSync(this.file, this.entries.map((e) => JSON.stringify(e) + "\n").join(""));
      } else fs.appendFileSync(this.file, JSON.stringify(message) + "\n");
    } catch {
      // No writable state dir (read-only home, container): history just isn't kept.
    }
  }

  /** The entry before the one shown (↑); `current` is kept to come back to. */
  older(current: string): string | undefined {
    if (this.pos === 0) return undefined;
    if (this.pos === this.entries.length) this.draft = current;
    return this.entries[--this.pos];
  }

  /** The entry after the one shown (↓), and finally the line that was being typed. */
  newer(): string | undefined {
    if (this.pos >= this.entries.length) return undefined;
    this.pos++;
    return this.pos === this.entries.length ? this.draft : this.entries[this.pos];
  }
}

function readEntries(file: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const value: unknown = JSON.parse(line);
      out.push(typeof value === "string" ? value : line);
    } catch {
      out.push(line);
    }
  }
  return out.slice(-MAX_ENTRIES);
}
