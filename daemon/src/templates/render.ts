import { imageRefOf, type StoredImage } from "../engine/Images.js";
import type { Segment } from "../engine/types.js";
import { IMAGE, MESSAGE, type ChatTemplate } from "./ChatTemplate.js";

export type Role = "system" | "user" | "bot" | "tool";

/** What the renderer needs of a message: bot replies carry the exact ids that were sampled. */
export interface RenderMessage {
  role: Role;
  text: string;
  tokens?: readonly number[];
  /** Images shown with the message, placed by the template's `image` field before the message's text. */
  images?: readonly StoredImage[];
}

/**
 * Renders messages by the reference's rules: each by its role's format (`first` for the first
 * user message after the system message), dropping the prefix when the previous message has the same role and the suffix
 * when the next one does. Template text becomes control segments; message text stays plain.
 */
export function render(template: ChatTemplate, messages: readonly RenderMessage[]): Segment[] {
  const segments: Segment[] = [];
  // `first` is for the message right after the system message, or the very first message when
  // the template has no system format.
  const firstAt = template.system === undefined ? 0 : messages[0]?.role === "system" ? 1 : -1;
  messages.forEach((msg, i) => {
    const format = formatFor(template, msg.role, i === firstAt);
    const [prefix = "", suffix = ""] = format.split(MESSAGE);
    if (messages[i - 1]?.role !== msg.role && prefix) segments.push({ kind: "control", text: prefix });
    for (const image of msg.images ?? []) segments.push(...imageSegments(template, image));
    if (msg.role === "bot" && msg.tokens) segments.push({ kind: "tokens", ids: msg.tokens, text: msg.text });
    else if (msg.text) segments.push({ kind: "text", text: msg.text });
    if (messages[i + 1]?.role !== msg.role && suffix) segments.push({ kind: "control", text: suffix });
  });
  return segments;
}

/**
 * One image as the template places it: its text before, the projector's chunk, its text after (the
 * one place image placement is decided; see ChatTemplate.image).
 */
function imageSegments(template: ChatTemplate, image: StoredImage): Segment[] {
  const [before = "", after = ""] = (template.image ?? IMAGE).split(IMAGE);
  return [
    ...(before ? [{ kind: "control", text: before } as const] : []),
    { kind: "image", image: imageRefOf(image), text: `[image ${image.name || image.sha256.slice(0, 12)}]` },
    ...(after ? [{ kind: "control", text: after } as const] : []),
  ];
}

function formatFor(template: ChatTemplate, role: Role, isFirstUser: boolean): string {
  switch (role) {
    case "system":
      return template.system ?? MESSAGE;
    case "user":
      return (isFirstUser && template.first) || template.user;
    case "bot":
      return template.bot;
    case "tool":
      return template.tool_response ?? template.user;
    default:
      return role satisfies never;
  }
}

/** Renders segments to one string (for `templates render` and golden tests). */
export function renderToString(template: ChatTemplate, messages: readonly RenderMessage[]): string {
  return render(template, messages)
    .map((s) => s.text)
    .join("");
}
