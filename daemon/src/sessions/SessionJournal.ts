import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import type { FunctionDecl, GenerationParams } from "@nanollm/shared";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import type { HistoryMessage } from "./Session.js";

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

/**
 * One JSON file per session under DATA_DIR/sessions, replaced atomically (write, fsync, rename)
 * so a crash leaves either the old or the new version, never half of one.
 */
export class SessionJournal {
  readonly dir: string;

  constructor(dataDir: string, private readonly log: (line: string) => void) {
    this.dir = path.join(dataDir, "sessions");
    fs.mkdirSync(this.dir, { recursive: true });
  }

  async save(record: SessionRecord): Promise<void> {
    const file = this.file(record.id);
    const tmp = `${file}.${process.pid}.tmp`;
    const handle = await fsp.open(tmp, "w");
    try {
      await handle.writeFile(JSON.stringify(record));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(tmp, file);
  }

  async remove(id: string): Promise<void> {
    await fsp.rm(this.file(id), { force: true });
  }

  /** Every readable record; an unreadable file is renamed *.corrupt and logged, the rest still load. */
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
        records.push(parseRecord(fs.readFileSync(file, "utf8")));
      } catch (err) {
        const quarantined = `${file}.corrupt`;
        fs.renameSync(file, quarantined);
        this.log(`session file ${file} is unreadable (${(err as Error).message}); moved it to ${quarantined}`);
      }
    }
    return records;
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }
}

function parseRecord(text: string): SessionRecord {
  const r = JSON.parse(text) as Partial<SessionRecord>;
  const ok =
    r.version === 1 &&
    typeof r.id === "string" &&
    typeof r.modelFile === "string" &&
    typeof r.template === "object" &&
    Array.isArray(r.history) &&
    r.history.every((m) => typeof m.text === "string" && Array.isArray(m.tokens) && ["user", "bot", "tool", "system"].includes(m.role));
  if (!ok) throw new Error("not a nanollm session record");
  return r as SessionRecord;
}
