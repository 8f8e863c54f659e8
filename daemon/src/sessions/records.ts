import { FunctionSet } from "../functions/FunctionSet.js";
import type { StoredImage } from "../engine/Images.js";
import type { ModelHost } from "../engine/ModelHost.js";
import { validateTemplate, type ChatTemplate } from "../templates/ChatTemplate.js";
import type { Stored } from "./Journal.js";
import { checkText } from "./limits.js";
import { checkParams } from "./params.js";
import { LOCAL_OWNER, Session } from "./Session.js";
import type { SessionRecord } from "./SessionJournal.js";

// A session as its journal record, and back.

/** A journaled session's template and functions, after the checks a request would get; throws what is wrong. */
function checkRecordFor(record: SessionRecord, host: ModelHost): { template: ChatTemplate; functions: FunctionSet } {
  checkParams(record.defaults);
  checkText("The system prompt", record.systemPrompt);
  const template = validateTemplate(record.template, `of session ${record.id}`);
  record.history.forEach((m, i) => {
    checkText(`History message ${i}`, m.text);
    const bad = m.tokens.find((id) => !host.isValidToken(id));
    if (bad !== undefined) throw new Error(`history message ${i} holds token id ${bad}, outside the vocabulary of ${host.vocabSize}`);
    checkStoredImages(m.images, m.text, i, host);
  });
  // Names were checked when declared; a pinned HTTP session's tools may have any OpenAI-valid name.
  const functions = FunctionSet.build(record.builtinFunctions ?? [], record.clientFunctions ?? [], "tools");
  return { template, functions };
}

/** A session holding the record (checked as a request would be; throws what is wrong), not tracked by any store. */
export function copyOf(record: SessionRecord, host: ModelHost, revision: number): Session {
  const checked = checkRecordFor(record, host);
  const session = new Session(record.id, host, checked.template, record.templateReason, record.systemPrompt, record.defaults);
  adopt(session, record, checked, revision);
  return session;
}

/** Makes `session` hold the record's state. */
function adopt(session: Session, record: SessionRecord, checked: { template: ChatTemplate; functions: FunctionSet }, revision: number): void {
  Object.assign(session, {
    template: checked.template,
    templateReason: record.templateReason,
    systemPrompt: record.systemPrompt,
    defaults: record.defaults,
    history: record.history,
    overflow: record.overflow,
    windowStart: record.windowStart,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    revision,
  });
  session.owner = record.owner ?? LOCAL_OWNER;
  session.functions = checked.functions;
}

/** Brings a copy up to the journal's newer revision (another daemon wrote it); its cache is realigned by its next turn. */
export function refresh(session: Session, stored: Stored): void {
  adopt(session, stored.record, checkRecordFor(stored.record, session.host), stored.revision);
}

/** A journaled message's images: a hash as ImageStore names files, pieces the model can hold. */
function checkStoredImages(images: unknown, text: string, i: number, host: ModelHost): void {
  if (images === undefined) return;
  const ok =
    Array.isArray(images) &&
    images.every(
      (im: Partial<StoredImage>) =>
        typeof im?.sha256 === "string" &&
        /^[0-9a-f]{64}$/.test(im.sha256) &&
        Array.isArray(im.pieces) &&
        (im.at === undefined || (Number.isInteger(im.at) && im.at >= 0 && im.at <= text.length)) &&
        im.pieces.every((p) => (p?.kind === "text" ? Array.isArray(p.tokens) && p.tokens.every((id) => host.isValidToken(id)) : p?.kind === "image" && Number.isInteger(p.nPos) && p.nPos >= 0 && p.nPos <= host.facts.contextSize)),
    );
  if (!ok) throw new Error(`history message ${i} holds a malformed image record`);
}

export function toRecord(s: Session): SessionRecord {
  return {
    version: 1,
    id: s.id,
    owner: s.owner,
    modelFile: s.host.facts.file,
    template: s.template,
    templateReason: s.templateReason,
    systemPrompt: s.systemPrompt,
    defaults: s.defaults,
    overflow: s.overflow,
    windowStart: s.windowStart,
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
    history: s.history,
    builtinFunctions: s.functions.builtinNames(),
    clientFunctions: s.functions.clientDecls(),
  };
}
