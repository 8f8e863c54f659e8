import { fail } from "@nanollm/shared";

/** A chat template as data, with the reference's field names (see templates/*.json). */
export interface ChatTemplate {
  name: string;
  system_prompt?: string;
  system?: string;
  first?: string;
  user: string;
  bot: string;
  stop?: string[];
  tool_call?: string;
  tool_response?: string;
  /**
   * Where an image goes in a message: `${IMAGE}` (the projector's chunk, its own begin/end tokens
   * included) with the template text around it, each image in turn at the start of the message's
   * text. Absent: the image right before the text, as llama.cpp's server places its media marker.
   */
  image?: string;
}

export const MESSAGE = "${MESSAGE}";
export const IMAGE = "${IMAGE}";
const FORMAT_FIELDS = ["system", "first", "user", "bot", "tool_response"] as const;
const TEXT_FIELDS = ["system_prompt", "tool_call", "image"] as const;
const KNOWN = new Set<string>(["name", "stop", ...FORMAT_FIELDS, ...TEXT_FIELDS]);

/** Checks parsed JSON is a template; errors name the source and the field. */
export function validateTemplate(json: unknown, source: string): ChatTemplate {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw fail.invalid(`Template ${source} must be a JSON object with at least "user" and "bot" fields.`);
  }
  const obj = json as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KNOWN.has(key)) throw fail.invalid(`Template ${source} has an unknown field "${key}"; allowed: ${[...KNOWN].join(", ")}.`);
  }
  for (const field of ["user", "bot"] as const) {
    if (obj[field] === undefined) throw fail.invalid(`Template ${source} lacks the required field "${field}".`);
  }
  for (const field of [...FORMAT_FIELDS, ...TEXT_FIELDS, "name"] as const) {
    const value = obj[field];
    if (value !== undefined && typeof value !== "string") throw fail.invalid(`Template ${source}: field "${field}" must be a string.`);
  }
  for (const field of FORMAT_FIELDS) {
    const value = obj[field];
    if (typeof value === "string" && value.split(MESSAGE).length !== 2) {
      throw fail.invalid(`Template ${source}: field "${field}" must contain \${MESSAGE} exactly once.`);
    }
  }
  if (typeof obj.image === "string" && obj.image.split(IMAGE).length !== 2) {
    throw fail.invalid(`Template ${source}: field "image" must contain \${IMAGE} exactly once.`);
  }
  const stop = obj.stop;
  if (stop !== undefined && !(Array.isArray(stop) && stop.every((s) => typeof s === "string" && s.length > 0))) {
    throw fail.invalid(`Template ${source}: field "stop" must be a list of non-empty strings.`);
  }
  if (typeof obj.tool_call === "string") {
    try {
      new RegExp(obj.tool_call, "s");
    } catch {
      throw fail.invalid(`Template ${source}: field "tool_call" is not a valid regular expression.`);
    }
  }
  // A template without a name (the reference crashes there) is named after its source.
  return { ...(obj as unknown as ChatTemplate), name: typeof obj.name === "string" && obj.name ? obj.name : source };
}
