import { NanoError } from "@nanollm/shared";

/**
 * The daemon package, for the commands that run on the daemon's machine (serve, pull, templates
 * render). The client never imports it: a machine that only chats with a remote daemon need not
 * install it, nor node-llama-cpp's GPU binaries.
 */
export async function loadDaemon(command: string): Promise<typeof import("@nanollm/daemon")> {
  try {
    return await import("@nanollm/daemon");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ERR_MODULE_NOT_FOUND") throw err;
    throw new NanoError("FAILED_PRECONDITION", `\`nanollm ${command}\` needs the daemon package (@nanollm/daemon), which is not installed here; install it, or run this on the daemon's machine.`);
  }
}
