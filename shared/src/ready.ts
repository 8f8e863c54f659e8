import type { ChildProcess } from "node:child_process";

/** The ready line's shape: `{"nanollm":"ready","address":"127.0.0.1:7433",...}` alone on a line. */
export const READY_LINE = /^\{"nanollm":"ready","address":"([^"]+)"[^\n]*\}$/m;

/** The one line `nanollm serve` prints on stdout once it accepts connections (machine-readable). */
export function readyLine(address: string): string {
  return JSON.stringify({ nanollm: "ready", address, pid: process.pid });
}

/** The address of a ready line in a daemon's output, or undefined while there is none. */
export function readyAddress(output: string): string | undefined {
  return READY_LINE.exec(output)?.[1];
}

/**
 * Waits for a `nanollm serve` child to print its ready line and resolves with its address (tests,
 * bench and scripts/run.sh all find readiness this way); rejects, with its output, if it exits first.
 */
export function waitForReady(proc: ChildProcess, timeoutMs = 180_000): Promise<{ address: string; output: () => string }> {
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`the daemon was not ready within ${timeoutMs / 1000} s:\n${output.slice(-3000)}`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const address = readyAddress(output);
      if (address) {
        cleanup();
        resolve({ address, output: () => output });
      }
    };
    const onExit = (code: number | null) => fail(new Error(`the daemon exited with ${code} before it was ready:\n${output.slice(-3000)}`));
    const cleanup = () => {
      clearTimeout(timer);
      proc.off("exit", onExit);
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    // Output keeps being collected after readiness, for the caller's log.
    proc.stdout?.on("data", onData);
    proc.stderr?.on("data", onData);
    proc.once("exit", onExit);
  });
}
