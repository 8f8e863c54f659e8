import type { Key } from "ink";

export const NO_KEY: Key = {
  upArrow: false,
  downArrow: false,
  leftArrow: false,
  rightArrow: false,
  pageDown: false,
  pageUp: false,
  home: false,
  end: false,
  return: false,
  escape: false,
  ctrl: false,
  shift: false,
  tab: false,
  backspace: false,
  delete: false,
  meta: false,
  super: false,
  hyper: false,
  capsLock: false,
  numLock: false,
};

const CONTROL = /([\x00-\x09\x0b\x0c\x0e-\x1f\x7f])/;

/**
 * A chunk of typed-ahead input (keys that arrived together: Ctrl+C twice, text and Backspace,
 * text and Tab) as the keys Ink would have reported one by one; undefined when it holds no
 * control character. Line breaks stay in the text parts: the caller treats them as Enter.
 */
export function splitControlKeys(input: string): [string, Key][] | undefined {
  if (input.length < 2 || !CONTROL.test(input)) return undefined;
  return input
    .split(CONTROL)
    .filter((part) => part !== "")
    .map((part): [string, Key] => {
      if (!CONTROL.test(part)) return [part, NO_KEY];
      if (part === "\x7f" || part === "\b") return ["", { ...NO_KEY, delete: true }];
      if (part === "\t") return ["", { ...NO_KEY, tab: true }];
      return [String.fromCharCode(part.charCodeAt(0) + 96), { ...NO_KEY, ctrl: true }];
    });
}
