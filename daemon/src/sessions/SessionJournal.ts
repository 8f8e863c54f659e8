import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fail, type FunctionDecl, type GenerationParams, type NanoError } from "@nanollm/shared";
import { SESSION_ID } from "./limits.js";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import type { HistoryMessage } from "./Session.js";
import type { Journal } from "./Journal.js";

/** What a session's file holds: everything needed to continue it after a restart. */
export interface SessionRecord {
  version: 1;
  id: string;
  /** Absent in records from before authentication: those belong to the local owner. */
  owner?: string;
  modelFile: string;
  template: ChatTemplate;
  templateReason: string;
  systemPrompt: string;
  defaults: GenerationParams;
  overflow: "wrap" | "error";
  windowStart: number;
  createdAt: number;
  updatedAt: number;
  history: HistoryMessage[];
  builtinFunctions?: string[];
  clientFunctions?: FunctionDecl[];
}

/** The file operations a save uses; a seam so tests can make the disk fail (e.g. ENOSPC). */
export interface JournalIo {
  writeFile(file: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
}

/** Writes, fsyncs and closes, so the rename that follows publishes complete bytes. */
async function writeSynced(file: string, data: string): Promise<void> {
  const handle = await fsp.open(file, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * One JSON file per session under DATA_DIR/sessions, replaced atomically (write, fsync, rename)
 * so a crash leaves either the old or the new version, never half of one.
 */
export class SessionJournal implements Journal {
  readonly dir: string;
  io: JournalIo = { writeFile: writeSynced, rename: (from, to) => fsp.rename(from, to) };

  constructor(dataDir: string, private readonly log: (line: string) => void) {
    this.dir = path.join(dataDir, "sessions");
    fs.mkdirSync(this.dir, { recursive: true });
  }

  get where(): string {
    return this.dir;
  }

  /** One daemon writes the folder: the revision only counts saves. */
  async save(record: SessionRecord, revision = 0): Promise<number> {
    const file = this.file(record.id);
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      await this.io.writeFile(tmp, JSON.stringify(record));
      await this.io.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw journalError(err, this.dir);
    }
    return revision + 1;
  }

  holds(id: string): boolean {
    return fs.existsSync(this.file(id));
  }

  async close(): Promise<void> {}

  async remove(id: string): Promise<void> {
    await fsp.rm(this.file(id), { force: true });
  }

  /**
   * Every readable record; an unreadable file is quarantined (see quarantine()), the rest still
   * load. Temp files of saves a crash interrupted are removed.
   */
  loadAll(): SessionRecord[] {
    const records: SessionRecord[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.endsWith(".tmp")) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (!name.endsWith(".json")) continue;
      try {
        const record = parseRecord(fs.readFileSync(file, "utf8"));
        // The id becomes a file name on every save: it must be the one this file already has.
        if (`${record.id}.json` !== name) throw new Error(`its id ${JSON.stringify(record.id.slice(0, 80))} does not match the file name`);
        records.push(record);
      } catch (err) {
        this.quarantineFile(file, (err as Error).message);
      }
    }
    return records;
  }

  /** Moves a session's file aside as *.corrupt with a log line; the daemon goes on without it. */
  quarantine(id: string, why: string): void {
    this.quarantineFile(this.file(id), why);
  }

  private quarantineFile(file: string, why: string): void {
    const quarantined = `${file}.corrupt`;
    try {
      fs.renameSync(file, quarantined);
      this.log(`session file ${file} is unreadable or invalid (${why}); moved it to ${quarantined}`);
    } catch (err) {
      this.log(`session file ${file} is unreadable or invalid (${why}) and could not be moved aside (${(err as Error).message}); it is skipped`);
    }
  }

  private file(id: string): string {
    // Ids are checked on every way in (the daemon's UUIDs, restored records); this is the last guard.
    if (!SESSION_ID.test(id)) throw fail.internal(`Session id ${JSON.stringify(id.slice(0, 80))} is not a safe file name.`);
    return path.join(this.dir, `${id}.json`);
  }
}

/** Data-folder errors as the client hears them: a full disk is named as such. */
function journalError(err: unknown, dir: string): NanoError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOSPC" || code === "EDQUOT") {
    return fail.exhausted(`The data folder is full (${code} writing ${dir}); the change was not made. Free some disk space and retry.`);
  }
  return fail.unavailable(`The data folder cannot be written (${code ?? (err as Error).message} in ${dir}); the change was not made. Check the disk and retry.`);
}

function parseRecord(text: string): SessionRecord {
  return checkRecord(JSON.parse(text));
}

/** The record's shape, field by field; settings, template and functions are checked on restore. */
export function checkRecord(value: unknown): SessionRecord {
  const r = (value ?? {}) as Partial<SessionRecord>;
  const problem =
    r.version !== 1 ? "unknown version" :
    typeof r.id !== "string" || !SESSION_ID.test(r.id) ? "its id is not a safe file name" :
    typeof r.modelFile !== "string" ? "no model file" :
    typeof r.template !== "object" || r.template === null ? "no template" :
    typeof r.templateReason !== "string" || typeof r.systemPrompt !== "string" ? "a text field is not text" :
    typeof r.defaults !== "object" || r.defaults === null || Array.isArray(r.defaults) ? "its defaults are not an object" :
    r.overflow !== "wrap" && r.overflow !== "error" ? "unknown overflow policy" :
    !Array.isArray(r.history) ? "no history" :
    !Number.isInteger(r.windowStart) || r.windowStart! < 0 || r.windowStart! > r.history.length ? "its window start is out of range" :
    !Number.isFinite(r.createdAt) || !Number.isFinite(r.updatedAt) ? "bad timestamps" :
    !r.history.every((m) => typeof m === "object" && m !== null && typeof m.text === "string" && Array.isArray(m.tokens) && m.tokens.every(Number.isInteger) && ["user", "bot", "tool", "system"].includes(m.role)) ? "a history message is malformed" :
    r.builtinFunctions !== undefined && !(Array.isArray(r.builtinFunctions) && r.builtinFunctions.every((n) => typeof n === "string")) ? "bad built-in functions" :
    r.clientFunctions !== undefined && !(Array.isArray(r.clientFunctions) && r.clientFunctions.every((f) => typeof f?.name === "string" && typeof f.description === "string" && typeof f.parametersJson === "string")) ? "bad client functions" :
    r.owner !== undefined && typeof r.owner !== "string" ? "bad owner" :
    undefined;
  if (problem) throw new Error(`not a valid nanollm session record: ${problem}`);
  return r as SessionRecord;
}
