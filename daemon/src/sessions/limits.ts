import { fail } from "@nanollm/shared";

/** Longest text accepted in one message or system prompt, in characters. */
export const MAX_MESSAGE_CHARS = 1_000_000;

/** Refuses a message, system prompt or history entry longer than the limit; `what` names it. */
export function checkText(what: string, text: string | undefined): void {
  if (text !== undefined && text.length > MAX_MESSAGE_CHARS) {
    throw fail.invalid(`${what} is ${text.length} characters, more than the limit of ${MAX_MESSAGE_CHARS}; shorten it or send it in parts.`);
  }
}

/** Longest GBNF grammar accepted from a request, in characters. */
export const MAX_GRAMMAR_CHARS = 100_000;

/** Deepest nesting of parenthesized groups in a GBNF grammar (llama.cpp's parser recurses per level). */
export const MAX_GRAMMAR_DEPTH = 64;

/** Largest bound of one `{m,n}` repetition in a GBNF grammar (llama.cpp expands each into rules). */
export const MAX_GRAMMAR_REPEAT = 1000;

/** Largest product of the repetition bounds nested inside one rule of a GBNF grammar. */
export const MAX_GRAMMAR_REPEAT_PRODUCT = 10_000;

/** Largest sum of all repetition bounds in a GBNF grammar (about the rules llama.cpp generates for them). */
export const MAX_GRAMMAR_REPEAT_TOTAL = 100_000;

/** Longest chain of rule references from `root` (llama.cpp follows them recursively). */
export const MAX_GRAMMAR_RULE_CHAIN = 1000;

/** Deepest nesting of a JSON Schema turned into a grammar. */
export const MAX_SCHEMA_DEPTH = 64;

/** Most subschemas in a JSON Schema turned into a grammar. */
export const MAX_SCHEMA_NODES = 10_000;

/** Longest GBNF text a JSON Schema may turn into, in characters. */
export const MAX_SCHEMA_GRAMMAR_CHARS = 1_000_000;

/** Most images one message may carry. */
export const MAX_IMAGES_PER_MESSAGE = 8;

/** Largest image file accepted, in bytes (a turn travels in one gRPC message of at most 16 MiB). */
export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;

/** Refuses too many or too large images in one message, naming the limit. */
export function checkImages(images: readonly { data: Uint8Array; name: string }[]): void {
  if (images.length > MAX_IMAGES_PER_MESSAGE) throw fail.invalid(`The message carries ${images.length} images, more than the limit of ${MAX_IMAGES_PER_MESSAGE}; send them over several turns.`);
  for (const im of images) {
    if (im.data.length === 0) throw fail.invalid(`The image ${im.name || "(unnamed)"} is empty; send the file's bytes.`);
    if (im.data.length > MAX_IMAGE_BYTES) throw fail.invalid(`The image ${im.name || "(unnamed)"} is ${im.data.length} bytes, more than the limit of ${MAX_IMAGE_BYTES}; send a smaller file.`);
  }
}
