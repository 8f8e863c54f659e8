import { NanoError } from "./errors.js";

/** Parses "HOST:PORT", "[v6]:PORT" or ":PORT" into parts; a bad address is an INVALID_ARGUMENT. */
export function parseAddress(address: string, defaultHost = "127.0.0.1"): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) {
    throw new NanoError("INVALID_ARGUMENT", `"${address}" is not an address; use HOST:PORT, e.g. 127.0.0.1:7433.`);
  }
  return { host: match[1] ?? (match[2] || defaultHost), port };
}

/** Formats host and port back into the form grpc-js expects. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a host name or IP (bare or in brackets) is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  return bare === "localhost" || bare === "::1" || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(bare);
}
