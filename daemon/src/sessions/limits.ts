import { fail } from "@nanollm/shared";

// Every bound a client's request or a stored file is held to, in one place. Each error names the
// limit it hit. Limits set by flags or environment (sessions, queue, timeouts, connections) are
// documented in shared/src/config.ts and checked where noted here.

/** Longest text accepted in one message or system prompt, in characters. */
export const MAX_MESSAGE_CHARS = 1_000_000;

/** Most messages a CreateSession history may hold. */
export const MAX_HISTORY_MESSAGES = 100_000;

/** Most client functions one session may declare. */
export const MAX_FUNCTIONS = 128;

/** Longest `parameters_json` of one function, in characters. */
export const MAX_PARAMETERS_CHARS = 65_536;

/**
 * Deepest nesting of objects and arrays in a function's `parameters_json`. A schema nested 20,000
 * deep parsed fine but overflowed the stack wherever it was written out again (every ListSessions
 * failed INTERNAL); real schemas stay far below 32.
 */
export const MAX_JSON_DEPTH = 32;

/**
 * Characters of a session id as a journal file name: the daemon's own ids are UUIDs. A restored
 * record whose id is anything else (`../x`, empty, a path) is quarantined, never used as a path.
 */
export const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/;

// Set in shared/src/config.ts (flag, env var, default), enforced where named:
//  NANOLLM_MAX_SESSIONS (1024): sessions the daemon keeps — SessionStore.create.
//  NANOLLM_MAX_SESSIONS_PER_OWNER (all of them): sessions one owner keeps — SessionStore.create.
//  NANOLLM_WRITE_TIMEOUT_MS (30 s): how long a Chat stream may stay unread — rpc/chatHandler.
//  NANOLLM_MAX_CONNECTIONS (256), NANOLLM_MAX_STREAMS (100 per connection), NANOLLM_IDLE_TIMEOUT_MS
//  (5 min): the HTTP/2 server's bounds — server.ts, listener.ts (which also closes a connection
//  that sends nothing for 10 s, HANDSHAKE_TIMEOUT_MS).
//  NANOLLM_MAX_QUEUE (256): turns waiting for a KV-cache sequence — the engine's pool.
// Kept beside the code they bound: max_new_tokens ≤ 32768 (params.ts, MAX_NEW_TOKENS_LIMIT), 8 function
// calls per turn (TurnCalls.ts), a function result ≤ 100,000 characters (rpc/chatHandler.ts), 16 MiB
// per request message (server.ts), status details ≤ 500 characters (rpc/errors.ts); grammars: the
// MAX_GRAMMAR_* and MAX_SCHEMA_* limits below.

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

/**
 * JSON.parse for client JSON, refusing text longer than `maxChars` or nested deeper than
 * MAX_JSON_DEPTH before parsing it (nothing deeper ever reaches the code that walks it).
 */
export function parseJsonLimited(what: string, text: string, maxChars: number): unknown {
  if (text.length > maxChars) throw fail.invalid(`${what} is ${text.length} characters, more than the limit of ${maxChars}; send a smaller schema.`);
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) throw fail.invalid(`${what} is nested ${depth} levels deep, more than the limit of ${MAX_JSON_DEPTH}; send a flatter schema.`);
  try {
    return JSON.parse(text);
  } catch {
    throw fail.invalid(`${what} is not valid JSON; send a JSON schema object.`);
  }
}

/** The deepest nesting of [ and { outside strings (malformed text is left to JSON.parse). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}
