import { NanoError } from "./errors.js";

const BYTE_UNITS: Record<string, number> = { "": 1, b: 1, k: 2 ** 10, kb: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mb: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gb: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tb: 2 ** 40, tib: 2 ** 40 };

/** Bytes from "8G", "512M", "1.5GiB" or a plain number (binary units: 1K = 1024). */
export function parseBytes(text: string, what = "a size"): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match && BYTE_UNITS[match[2]!.toLowerCase()];
  if (!match || unit === undefined || unit === null) throw new NanoError("INVALID_ARGUMENT", `"${text}" is not ${what}; write it as bytes or with a unit, e.g. 8G or 512M.`);
  return Math.floor(Number(match[1]) * unit);
}

const MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds from a keep-alive such as "5m", "30s", "500ms", "1h"; "-1" is forever (-1), "0" is 0. */
export function parseKeepAlive(text: string): number {
  const t = text.trim();
  if (t === "-1") return -1;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(t);
  if (!match) throw new NanoError("INVALID_ARGUMENT", `"${text}" is not a keep-alive duration; write e.g. 5m, 30s or 1h, 0 to unload after each turn, or -1 to keep models loaded.`);
  return Math.round(Number(match[1]) * MS[match[2] ?? "s"]!);
}

/** "1.5 GiB", "300.0 MiB": a byte count for people. */
export function formatBytes(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
