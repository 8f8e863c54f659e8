import { execFileSync, spawnSync } from "node:child_process";

/** Whether a tmux binary can be run here. */
export function haveTmux(): boolean {
  return spawnSync("tmux", ["-V"], { stdio: "ignore" }).status === 0;
}

/**
 * A program running in a detached tmux session of a fixed size: keys go in with send-keys, the
 * screen comes back with capture-pane, as a person at a terminal would see it.
 */
export class TmuxScreen {
  readonly name = `nanollm-tui-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(command: string[], opts: { columns?: number; rows?: number; env?: Record<string, string> } = {}) {
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${quote(v)}`);
    // The shell line reports how the program ended and keeps the pane open to read it.
    const line = `env ${env.join(" ")} ${command.map(quote).join(" ")}; echo "[exited $?]"; sleep 600`;
    execFileSync("tmux", ["new-session", "-d", "-s", this.name, "-x", String(opts.columns ?? 100), "-y", String(opts.rows ?? 30), line]);
  }

  /** Types text as keys; "Enter", "C-c", "Escape" and the like are named keys (tmux syntax). */
  keys(...keys: string[]): void {
    execFileSync("tmux", ["send-keys", "-t", this.name, ...keys]);
  }

  /** Types text literally (no key names), e.g. a line starting with a slash. */
  text(text: string): void {
    execFileSync("tmux", ["send-keys", "-t", this.name, "-l", text]);
  }

  /** The visible screen, wrapped lines joined. */
  screen(): string {
    return execFileSync("tmux", ["capture-pane", "-p", "-J", "-t", this.name], { encoding: "utf8" });
  }

  /** Polls the screen until `pattern` shows; returns the match (no timing is asserted). */
  async waitFor(pattern: RegExp, what: string, ms = 60_000): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const screen = this.screen();
      const match = pattern.exec(screen);
      if (match) return match;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what} (${String(pattern)}); the screen:\n${screen}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  resize(columns: number, rows: number): void {
    execFileSync("tmux", ["resize-window", "-t", this.name, "-x", String(columns), "-y", String(rows)]);
  }

  kill(): void {
    spawnSync("tmux", ["kill-session", "-t", this.name], { stdio: "ignore" });
  }
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
