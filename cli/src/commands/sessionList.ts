import { InvalidArgumentError } from "commander";
import type { SessionInfo } from "@nanollm/shared";
import type { NanoClient } from "../client/NanoClient.js";

/** The session used last (its last turn or change is the newest), if any. */
export async function latestSession(client: Pick<NanoClient, "listSessions">): Promise<string | undefined> {
  const list = await client.listSessions();
  return list.reduce<SessionInfo | undefined>((a, b) => (a && a.updatedAtMs >= b.updatedAtMs ? a : b), undefined)?.sessionId;
}

/** "3m ago", "5h ago", "2d ago". */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** One line of `sessions list` and `/session list`: id, when, title, size. */
export function sessionLine(s: SessionInfo, idWidth = 36, now = Date.now()): string {
  const title = s.title ? `"${s.title}"` : "(no messages)";
  return `${s.sessionId.slice(0, idWidth)}  ${ago(s.updatedAtMs, now).padStart(8)}  ${title}  ${s.model} · ${s.chatTemplate} · ${s.messageCount} messages · ${s.contextUsed}/${s.contextSize} tokens${s.busy ? " · busy" : ""}${s.owner && s.owner !== "local" ? ` · owner ${s.owner}` : ""}`;
}

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** commander parser for an age: 30m, 12h, 7d, 2w. */
export function durationArg(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smhdw])$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected an age such as 30m, 12h, 7d or 2w, got "${value}".`);
  return Number(match[1]) * UNITS[match[2]!]!;
}
