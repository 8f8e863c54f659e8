// The fixed GBNF rules a JSON Schema grammar draws on, written with `@` for the rule-name prefix.
// Every value rule ends in `@-space`, so a value can be followed by limited whitespace.

/** Bodies of the shared rules, by name (without the prefix); added to a grammar only when used. */
export const SHARED_RULES: Record<string, string> = {
  space: `| " " | "\\n" [ \\t]{0,20}`,
  char: `[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})`,
  string: `"\\"" @-char* "\\"" @-space`,
  integral: `"-"? ([0] | [1-9] [0-9]{0,15})`,
  integer: `@-integral @-space`,
  number: `@-integral ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,16})? @-space`,
  boolean: `("true" | "false") @-space`,
  null: `"null" @-space`,
  value: `@-object | @-array | @-string | @-number | @-boolean | @-null`,
  object: `"{" @-space (@-string ":" @-space @-value ("," @-space @-string ":" @-space @-value)*)? "}" @-space`,
  array: `"[" @-space (@-value ("," @-space @-value)*)? "]" @-space`,
  date: `[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])`,
  time: `([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" ([0-5] [0-9] | "60") ("." [0-9]{1,9})? ("Z" | "z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])`,
  "date-time": `@-date [Tt] @-time`,
  uuid: `[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}`,
};

/** The shared rules each shared rule refers to, so that adding one adds what it needs. */
export function sharedDeps(name: string): string[] {
  return [...(SHARED_RULES[name] ?? "").matchAll(/@-([a-z-]+)/g)].map((m) => m[1]!);
}

/** `text` as a GBNF string literal: quotes, backslashes and control characters escaped. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}
