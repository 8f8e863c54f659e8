import { fail, NanoError, type FunctionDecl } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import type { Segment } from "../engine/types.js";
import type { ModelRegistry } from "../models/ModelRegistry.js";
import { FunctionSet } from "../functions/FunctionSet.js";
import type { ImageBytes } from "../sessions/Journal.js";
import { checkImages, checkText } from "../sessions/limits.js";
import { readImages, type ImageInput } from "../sessions/readImages.js";
import type { Caller, HistoryMessage } from "../sessions/Session.js";
import type { Conversation, StatelessSessions } from "../sessions/StatelessSessions.js";
import type { ChatTemplate } from "../templates/ChatTemplate.js";
import { chooseTemplate } from "../templates/chooseTemplate.js";
import type { TemplateRegistry } from "../templates/TemplateRegistry.js";

/** A chat message as both HTTP APIs carry it, once its content parts are text and image bytes. */
export interface WireMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  toolCalls: WireCall[];
  /** Images shown with a user message, in their order (placed where the template puts images). */
  images?: ImageInput[];
}

/** A tool call: the function's name and its arguments as JSON text. */
export interface WireCall {
  name: string;
  arguments: string;
}

/** A tool the client declares. */
export interface WireTool {
  name: string;
  description: string;
  parameters: object | undefined;
}

/**
 * The model of that name (Ollama's ":latest" tag allowed): a known one, loaded again if it was
 * unloaded, or one of the models folder, loaded; an unknown name is NOT_FOUND. Never a path.
 */
export async function findModel(models: ModelRegistry, name: string): Promise<ModelHost> {
  const bare = name.replace(/:latest$/, "");
  const unknown = () => {
    const names = new Set([...models.list().map((h) => h.facts.name), ...models.catalogue().map((f) => f.name)]);
    return fail.notFound(`No model named "${name}" is loaded; use one of ${[...names].join(", ")} (GET /v1/models or /api/tags lists them).`);
  };
  if (!bare || /[\\/]/.test(bare) || /\.gguf$/i.test(bare)) throw unknown();
  try {
    return await models.get(bare);
  } catch (err) {
    throw err instanceof NanoError && err.code === "NOT_FOUND" ? unknown() : err;
  }
}

/**
 * The chat template for a request: the model's own choice, or its tool-calling variant when the
 * request declares tools (chat-ml → chat-ml-tools); tools with a template that has no tool-call
 * format are refused rather than silently ignored.
 */
export function templateFor(host: ModelHost, templates: TemplateRegistry, withTools: boolean, raw = false): ChatTemplate {
  if (raw) return templates.resolve("raw");
  const chosen = chooseTemplate(host.facts, templates).template;
  if (!withTools || chosen.tool_call) return chosen;
  if (templates.names().includes(`${chosen.name}-tools`)) return templates.resolve(`${chosen.name}-tools`);
  throw fail.invalid(`Model ${host.facts.name} uses the ${chosen.name} chat template, which has no tool-call format, so it cannot call tools; send the request without tools.`);
}

const toolSets = new Map<string, FunctionSet>();

/** The request's tools as a function set (the same tools give the same set, so its grammar is compiled once). */
export function toolSet(tools: readonly WireTool[]): FunctionSet {
  if (tools.length === 0) return FunctionSet.none;
  const decls: FunctionDecl[] = tools.map((t) => ({ name: t.name, description: t.description, parametersJson: t.parameters ? JSON.stringify(t.parameters) : "" }));
  const key = JSON.stringify(decls);
  let set = toolSets.get(key);
  if (!set) {
    set = FunctionSet.build([], decls, "tools");
    toolSets.set(key, set);
    if (toolSets.size > 256) toolSets.delete(toolSets.keys().next().value!);
  }
  return set;
}

/** How a reply is known when the client sends it back: its text and its calls, arguments normalized. */
export function replyKey(content: string, calls: readonly WireCall[]): string {
  return JSON.stringify([content.trim(), calls.map((c) => [c.name, normalJson(c.arguments)])]);
}

function normalJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return text;
  }
}

/**
 * The conversation a request carries: system messages become the system prompt, the trailing user
 * or tool messages are the turn, the rest is history; assistant replies the daemon gave get their
 * exact ids back, others are tokenized (tool calls in the template's own format). Images are read
 * by the model's projector (refused as over gRPC) and stored in `store` when the session is journaled.
 */
export async function toConversation(
  host: ModelHost,
  template: ChatTemplate,
  functions: FunctionSet,
  messages: readonly WireMessage[],
  stateless: StatelessSessions,
  who: Caller,
  store?: ImageBytes,
): Promise<Conversation> {
  messages.forEach((m, i) => checkText(`Message ${i}`, m.content));
  const images = new Map<WireMessage, HistoryMessage["images"]>();
  for (const [i, m] of messages.entries()) {
    if (!m.images?.length) continue;
    if (m.role !== "user") throw fail.invalid(`Message ${i} (${m.role}) carries images; only user messages may carry images.`);
    checkImages(m.images);
    images.set(m, await readImages(host, m.images, store));
  }
  const system = messages.filter((m) => m.role === "system").map((m) => m.content);
  const rest = messages.filter((m) => m.role !== "system");
  const last = rest.at(-1);
  if (!last) throw fail.invalid("The request has no user message; send at least one message with role user.");
  if (last.role === "assistant") throw fail.invalid("The last message is the assistant's; end the conversation with a user or tool message.");
  let split = rest.length;
  while (split > 0 && rest[split - 1]!.role !== "assistant") split--;
  const toHistory = (ms: readonly WireMessage[]) =>
    mergeTools(ms).map((m) => {
      const out = historyMessage(host, template, m, (key) => stateless.recall(host, who, key));
      const shown = images.get(m);
      return shown ? { ...out, images: shown } : out;
    });
  return { host, template, systemPrompt: system.join("\n\n"), functions, history: toHistory(rest.slice(0, split)), lead: toHistory(rest.slice(split)) };
}

/** Consecutive tool results become one tool message (the template renders one response block). */
function mergeTools(messages: readonly WireMessage[]): WireMessage[] {
  const out: WireMessage[] = [];
  for (const m of messages) {
    const prev = out.at(-1);
    if (m.role === "tool" && prev?.role === "tool") out[out.length - 1] = { ...prev, content: `${prev.content}\n${m.content}` };
    else out.push(m);
  }
  return out;
}

function historyMessage(host: ModelHost, template: ChatTemplate, m: WireMessage, recall: (key: string) => HistoryMessage | undefined): HistoryMessage {
  switch (m.role) {
    case "user":
    case "tool":
      return { role: m.role, text: m.content, tokens: [] };
    case "assistant": {
      const known = recall(replyKey(m.content, m.toolCalls));
      if (known) return known;
      if (m.toolCalls.length === 0) return { role: "bot", text: m.content, tokens: host.tokenizeText(m.content) };
      return callMessage(host, template, m);
    }
    case "system":
      throw new Error("system messages are the system prompt");
    default:
      return m.role satisfies never;
  }
}

/** A reply with tool calls the daemon did not give: each call written in the template's format. */
function callMessage(host: ModelHost, template: ChatTemplate, m: WireMessage): HistoryMessage {
  const [open = "", close = ""] = (template.tool_call ?? "(.*?)").split("(.*?)").map(literal);
  const segments: Segment[] = m.content ? [{ kind: "text", text: m.content }] : [];
  for (const call of m.toolCalls) {
    const json = `{"name": ${JSON.stringify(call.name)}, "arguments": ${normalJson(call.arguments)}}`;
    // The template's delimiters may be control tokens; the call's JSON is plain text.
    segments.push({ kind: "control", text: open }, { kind: "text", text: json }, { kind: "control", text: close });
  }
  const bos = host.tokenize([]).length;
  const tokens = host.tokenize(segments.filter((s) => s.text)).slice(bos);
  return { role: "bot", text: segments.map((s) => s.text).join(""), tokens };
}

/** The literal text of a tool_call pattern's piece (optional newlines dropped); "" if it is not literal. */
function literal(piece: string): string {
  const stripped = piece.replace(/\\n\?/g, "");
  return /(?<!\\)[()[\]?*+{}|^$.]/.test(stripped) ? "" : stripped.replace(/\\(.)/g, "$1");
}
