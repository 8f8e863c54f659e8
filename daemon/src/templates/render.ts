import { imageRefOf, type StoredImage } from "../engine/Images.js";
import type { Segment } from "../engine/types.js";
import { IMAGE, MESSAGE, type ChatTemplate } from "./ChatTemplate.js";

export type Role = "system" | "user" | "bot" | "tool";

/** What the renderer needs of a message: bot replies carry the exact ids that were sampled. */
export interface RenderMessage {
  role: Role;
  text: string;
  tokens?: readonly number[];
  /** Images shown with the message, each where its `at` says in the text (else before it), wrapped by the template's `image` field. */
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
    if (msg.role === "bot" && msg.tokens) segments.push({ kind: "tokens", ids: msg.tokens, text: msg.text });
    else segments.push(...textWithImages(template, msg.text, msg.images ?? []));
    if (messages[i + 1]?.role !== msg.role && suffix) segments.push({ kind: "control", text: suffix });
  });
  return segments;
}

/** A message's text with its images where they stand in it (stable: images at one place keep their order). */
function textWithImages(template: ChatTemplate, text: string, images: readonly StoredImage[]): Segment[] {
  const out: Segment[] = [];
  let from = 0;
  for (const image of [...images].sort((a, b) => (a.at ?? 0) - (b.at ?? 0))) {
    const at = Math.min(Math.max(image.at ?? 0, from), text.length);
    if (at > from) out.push({ kind: "text", text: text.slice(from, at) });
    out.push(...imageSegments(template, image));
    from = at;
  }
  if (from < text.length) out.push({ kind: "text", text: text.slice(from) });
  return out;
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
