import { OverflowPolicy, Role, type Message, type ModelInfo, type SessionInfo, type TemplateInfo } from "@nanollm/shared";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import type { ModelHost } from "../engine/ModelHost.js";
import type { HistoryMessage, Session } from "../sessions/Session.js";
import { chooseTemplate } from "../templates/chooseTemplate.js";
import type { TemplateRegistry } from "../templates/TemplateRegistry.js";
import type { Role as DomainRole } from "../templates/render.js";
import { fail } from "@nanollm/shared";
import { SESSION_ID } from "../sessions/limits.js";

const TO_WIRE: Record<DomainRole, Role> = { system: Role.ROLE_SYSTEM, user: Role.ROLE_USER, bot: Role.ROLE_BOT, tool: Role.ROLE_TOOL };

export function sessionInfo(s: Session, withHistory: boolean): SessionInfo {
  return {
    sessionId: s.id,
    model: s.host.facts.name,
    chatTemplate: s.template.name,
    templateReason: s.templateReason,
    systemPrompt: s.systemPrompt,
    defaults: s.defaults,
    messageCount: s.history.length,
    contextUsed: s.contextUsed(),
    contextSize: s.contextSize,
    cachedTokens: s.host.pool.cachedLength(s.id),
    busy: s.running !== undefined,
    createdAtMs: s.createdAt,
    updatedAtMs: s.updatedAt,
    history: withHistory ? s.history.map(messageToWire) : [],
    overflow: s.overflow === "wrap" ? OverflowPolicy.OVERFLOW_POLICY_WRAP : OverflowPolicy.OVERFLOW_POLICY_ERROR,
    wrappedMessages: s.windowStart,
    functions: s.functions.decls(),
    owner: s.owner,
    title: s.title,
    lastUserText: s.lastUserText,
    templateHasSystem: s.template.system !== undefined,
    historySeq: s.feed.settled,
  };
}

function messageToWire(m: HistoryMessage): Message {
  return {
    role: TO_WIRE[m.role],
    text: m.text,
    tokenIds: m.tokens,
    images: (m.images ?? []).map((i) => ({ name: i.name, sizeBytes: i.bytes, sha256: i.sha256, width: i.width, height: i.height, offset: [...m.text.slice(0, i.at ?? 0)].length })),
  };
}

/** A client-given history message; the system prompt is set separately, so it is refused here. */
export function messageFromWire(m: Message, index: number): HistoryMessage {
  const role = (Object.keys(TO_WIRE) as DomainRole[]).find((r) => TO_WIRE[r] === m.role);
  if (!role || role === "system") {
    throw fail.invalid(`History message ${index} has role ${m.role}; use USER, BOT or TOOL (the system prompt has its own field).`);
  }
  if (m.images.length > 0) throw fail.invalid(`History message ${index} carries images; send images with a turn (UserTurn.images), not in a given history.`);
  return { role, text: m.text, tokens: role === "bot" ? [...m.tokenIds] : [] };
}

/** A client-chosen session id (CreateSession's session_id), or undefined for a daemon-picked UUID. */
export function sessionIdFromWire(id: string): string | undefined {
  if (id === "") return undefined;
  if (!SESSION_ID.test(id)) throw fail.invalid("A session id must be 1 to 128 letters, digits, '_' or '-'; fix it or leave it empty for a new UUID.");
  return id;
}

/** The wire policy as the session's; unset means wrap. */
export function overflowFromWire(p: OverflowPolicy): "wrap" | "error" {
  switch (p) {
    case OverflowPolicy.OVERFLOW_POLICY_UNSPECIFIED:
    case OverflowPolicy.OVERFLOW_POLICY_WRAP:
      return "wrap";
    case OverflowPolicy.OVERFLOW_POLICY_ERROR:
      return "error";
    default:
      throw fail.invalid(`Overflow policy ${p} is not known; use WRAP or ERROR.`);
  }
}

export function templateInfo(t: ChatTemplate): TemplateInfo {
  return { name: t.name, hasSystem: t.system !== undefined, toolCalls: t.tool_call !== undefined, stop: t.stop ?? [] };
}

/** How a loaded model is used now: its sessions, and when keep-alive unloads it. */
export interface ModelUse {
  sessions: number;
  unloadsAt: number | undefined;
}

export function modelInfo(h: ModelHost, templates: TemplateRegistry, use: ModelUse = { sessions: 0, unloadsAt: undefined }): ModelInfo {
  const f = h.facts;
  const choice = chooseTemplate(f, templates);
  return {
    name: f.name,
    file: f.file,
    sizeBytes: f.sizeBytes,
    architecture: f.architecture,
    parameters: f.parameters,
    contextSize: f.contextSize,
    sequences: f.sequences,
    kvCacheBytes: f.kvCacheBytes,
    kvCacheType: f.kvCacheType,
    defaultTemplate: choice.template.name,
    defaultTemplateReason: choice.reason,
    images: f.mmproj !== undefined,
    mmproj: f.mmproj ?? "",
    memoryBytes: h.memoryBytes,
    sessionCount: use.sessions,
    busy: h.turns > 0,
    idleMs: h.turns > 0 ? 0 : Date.now() - h.lastUsed,
    unloadsAtMs: use.unloadsAt ?? 0,
  };
}
