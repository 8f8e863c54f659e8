// A terminal for the chat screen to draw on without a TTY: it records when each frame was written.
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[=>78]/g;

export interface Frame {
  /** performance.now() when the frame was written. */
  t: number;
  /** The frame as plain text (escape sequences removed). */
  text: string;
  bytes: number;
}

/** stdout as Ink sees a 100×40 terminal; every write is kept with its time. */
export class RecordingStdout extends EventEmitter {
  readonly isTTY = true;
  readonly frames: Frame[] = [];
  columns = 100;
  rows = 40;

  write = (data: string | Uint8Array, cb?: () => void): boolean => {
    const s = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
    this.frames.push({ t: performance.now(), text: s.replace(ANSI, ""), bytes: Buffer.byteLength(s) });
    cb?.();
    return true;
  };
}

/** stdin that never types anything (the benchmark drives the controller directly). */
export class SilentStdin extends EventEmitter {
  readonly isTTY = true;
  setEncoding(): void {}
  setRawMode(): void {}
  resume(): void {}
  pause(): void {}
  ref(): void {}
  unref(): void {}
  read(): null {
    return null;
  }
}
