import { Template } from "@huggingface/jinja";
import { IMAGE, MESSAGE, type ChatTemplate } from "./ChatTemplate.js";
import { renderToString, type RenderMessage } from "./render.js";

// Sentinels no real template contains, so their positions split the rendering into its parts.
const S = "\u0001SYS\u0001";
const U1 = "\u0001USR1\u0001";
const A1 = "\u0001BOT1\u0001";
const U2 = "\u0001USR2\u0001";

type JinjaMessage = { role: "system" | "user" | "assistant"; content: string | { type: string; text?: string }[] };

/** The image placeholders vision templates write (the projector adds the model's own tokens in their place). */
const IMAGE_TOKEN = /<\|vision_start\|>(?:<\|image_pad\|>)*<\|vision_end\|>|<start_of_image>|<image>|<\|image\|>|<\|image_pad\|>|\[IMG\]/;

/**
 * Derives a template in our format from a model's own Jinja chat template by rendering sample
 * conversations with sentinel texts and cutting at them; BOS is left to the tokenizer. The result
 * is checked against the Jinja rendering of a longer conversation, and undefined when it differs.
 */
export function templateFromJinja(jinja: string, name: string, eosText = ""): ChatTemplate | undefined {
  let template: Template;
  try {
    template = new Template(jinja);
  } catch {
    return undefined;
  }
  const render = (messages: JinjaMessage[]): string | undefined => {
    try {
      return template.render({ messages, add_generation_prompt: true, bos_token: "", eos_token: eosText });
    } catch {
      return undefined;
    }
  };
  // Vision models' templates often read only content parts ([{type: "text", text}]), not strings:
  // a rendering that loses a message's text is tried again with its texts as parts.
  const run = (messages: JinjaMessage[]): string | undefined => {
    const plain = render(messages);
    if (plain !== undefined && messages.every((m) => typeof m.content !== "string" || plain.includes(m.content))) return plain;
    return render(messages.map((m) => (typeof m.content === "string" ? { ...m, content: [{ type: "text", text: m.content }] } : m)));
  };
  const a = run([{ role: "user", content: U1 }]);
  const b = run([
    { role: "user", content: U1 },
    { role: "assistant", content: A1 },
    { role: "user", content: U2 },
  ]);
  if (!a || !b) return undefined;
  const [firstPrefix = "", afterUser = ""] = a.split(U1);
  const between = cut(b, U1, A1);
  const afterBot = cut(b, A1, U2);
  if (between === undefined || afterBot === undefined || between !== afterUser) return undefined;
  const userPrefix = commonSuffix(firstPrefix, afterBot);
  const derived: ChatTemplate = {
    name,
    user: `${userPrefix}${MESSAGE}${afterUser}`,
    bot: `${MESSAGE}${afterBot.slice(0, afterBot.length - userPrefix.length)}`,
  };
  const c = run([
    { role: "system", content: S },
    { role: "user", content: U1 },
  ]);
  const [sysPrefix = "", sysRest = ""] = c?.split(S) ?? [];
  const sysSuffix = sysRest.split(U1)[0] ?? "";
  if (c && sysSuffix.endsWith(userPrefix)) {
    derived.system = `${sysPrefix}${MESSAGE}${sysSuffix.slice(0, sysSuffix.length - userPrefix.length)}`;
    // A template that injects a default system message when none is given shows it here.
    const injected = firstPrefix.slice(0, firstPrefix.length - userPrefix.length);
    if (injected.startsWith(sysPrefix) && injected.endsWith(sysSuffix.slice(0, sysSuffix.length - userPrefix.length)) && injected.length > 0) {
      derived.system_prompt = injected.slice(sysPrefix.length, injected.length - (sysSuffix.length - userPrefix.length));
    }
  } else if (firstPrefix !== userPrefix) {
    derived.first = `${firstPrefix}${MESSAGE}${afterUser}`;
  }
  if (!selfCheck(derived, run)) return undefined;
  const image = imageFormat(run);
  return image ? { ...derived, image } : derived;
}

/**
 * Where the template puts an image in a user message (content parts: an image, then the text), as
 * our `image` field: the text the image part adds, with its placeholder token as ${IMAGE}.
 * Undefined when the template shows no image, or changes more than it inserts before the text.
 */
function imageFormat(run: (m: JinjaMessage[]) => string | undefined): string | undefined {
  const plain = run([{ role: "user", content: [{ type: "text", text: U1 }] }]);
  const shown = run([{ role: "user", content: [{ type: "image" }, { type: "text", text: U1 }] }]);
  if (!plain || !shown || plain === shown) return undefined;
  const at = plain.indexOf(U1);
  if (at < 0 || !shown.startsWith(plain.slice(0, at)) || !shown.endsWith(plain.slice(at))) return undefined;
  const added = shown.slice(at, shown.length - (plain.length - at));
  const token = IMAGE_TOKEN.exec(added);
  return token ? `${added.slice(0, token.index)}${IMAGE}${added.slice(token.index + token[0].length)}` : undefined;
}

function selfCheck(t: ChatTemplate, run: (m: JinjaMessage[]) => string | undefined): boolean {
  const convo: RenderMessage[] = [
    ...(t.system ? [{ role: "system" as const, text: "Be kind." }] : []),
    { role: "user", text: "Hi there" },
    { role: "bot", text: "Hello." },
    { role: "user", text: "How are you?" },
    { role: "bot", text: "Fine." },
    { role: "user", text: "Good." },
  ];
  const expected = run(convo.map((m) => ({ role: m.role === "bot" ? "assistant" : (m.role as "system" | "user"), content: m.text })));
  return expected !== undefined && renderToString(t, convo) === expected;
}

function cut(text: string, from: string, to: string): string | undefined {
  const start = text.indexOf(from);
  const end = text.indexOf(to, start + from.length);
  return start < 0 || end < 0 ? undefined : text.slice(start + from.length, end);
}

function commonSuffix(a: string, b: string): string {
  let n = 0;
  while (n < a.length && n < b.length && a[a.length - 1 - n] === b[b.length - 1 - n]) n++;
  return a.slice(a.length - n);
}
