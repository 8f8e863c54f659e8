import { fail } from "@nanollm/shared";

/** Longest text accepted in one message or system prompt, in characters. */
export const MAX_MESSAGE_CHARS = 1_000_000;

/** Refuses a message, system prompt or history entry longer than the limit; `what` names it. */
export function checkText(what: string, text: string | undefined): void {
  if (text !== undefined && text.length > MAX_MESSAGE_CHARS) {
    throw fail.invalid(`${what} is ${text.length} characters, more than the limit of ${MAX_MESSAGE_CHARS}; shorten it or send it in parts.`);
  }
}
