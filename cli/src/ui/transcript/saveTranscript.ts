import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Role, type SessionInfo } from "@nanollm/shared";
import { CommandError } from "../commands/types.js";

const ROLE: Record<number, string> = { [Role.ROLE_SYSTEM]: "system", [Role.ROLE_USER]: "user", [Role.ROLE_BOT]: "bot", [Role.ROLE_TOOL]: "tool" };

/** The conversation as Markdown: one heading per message. */
export function transcriptMarkdown(s: SessionInfo): string {
  const parts = [`# nanollm session ${s.sessionId}`, "", `model ${s.model} · template ${s.chatTemplate}`, ""];
  if (s.systemPrompt) parts.push("## system", "", s.systemPrompt, "");
  for (const m of s.history) parts.push(`## ${ROLE[m.role] ?? "unknown"}`, "", m.text, "");
  return parts.join("\n");
}

/**
 * The conversation as JSON. Bot messages keep their token ids, so the file can start a new
 * session (CreateSession's history) whose KV cache matches the original.
 */
export function transcriptJson(s: SessionInfo): string {
  const messages = s.history.map((m) => ({ role: ROLE[m.role] ?? "unknown", text: m.text, ...(m.role === Role.ROLE_BOT ? { tokenIds: m.tokenIds } : {}) }));
  return JSON.stringify({ sessionId: s.sessionId, model: s.model, chatTemplate: s.chatTemplate, systemPrompt: s.systemPrompt, messages }, null, 2) + "\n";
}

/** Writes the transcript to FILE (.md or .json, by its extension); returns the full path. */
export function saveTranscript(file: string, session: SessionInfo): string {
  const full = path.resolve(file.replace(/^~(?=$|\/)/, os.homedir()));
  const ext = path.extname(full).toLowerCase();
  if (ext !== ".md" && ext !== ".json") throw new CommandError(`Give the file a .md or .json extension (not "${ext || "none"}") to pick the format.`);
  try {
    fs.writeFileSync(full, ext === ".md" ? transcriptMarkdown(session) : transcriptJson(session));
  } catch (err) {
    throw new CommandError(`Could not write ${full}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; check the folder exists and is writable.`);
  }
  return full;
}
