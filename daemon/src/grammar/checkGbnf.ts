import { fail } from "@nanollm/shared";
import {
  MAX_GRAMMAR_CHARS,
  MAX_GRAMMAR_DEPTH,
  MAX_GRAMMAR_REPEAT,
  MAX_GRAMMAR_REPEAT_PRODUCT,
  MAX_GRAMMAR_REPEAT_TOTAL,
  MAX_GRAMMAR_RULE_CHAIN,
} from "../sessions/limits.js";
import { appendAll } from "../sessions/appendAll.js";

// A pre-check, not a parser: llama.cpp's grammar parser recurses once per nested group (it
// segfaults near 20,000 levels), expands `{m,n}` into rules, and stalls on repetitions of things
// that can match nothing (every way of splitting the text is a parse stack). This pass is linear,
// never recurses deeper than MAX_GRAMMAR_DEPTH, and rejects those shapes; llama.cpp still parses
// what passes and reports ordinary syntax errors itself.

type Token =
  | { t: "name"; v: string; line: number }
  | { t: "def" | "(" | ")" | "|" | "char"; line: number }
  | { t: "lit"; empty: boolean; line: number }
  | { t: "rep"; min: number; max: number; line: number };

/** One element of a sequence: a terminal, or a reference to a rule or an (anonymous) group. */
interface Item {
  ref?: number;
  emptyLit: boolean;
  min: number;
  max: number;
}

/** A rule, or a parenthesized group flattened into an anonymous rule of its own. */
interface Nt {
  name: string;
  defined: boolean;
  usedIn?: string;
  alts: Item[][];
}

const WORD = /[a-zA-Z0-9-]/;
const REPEAT = /\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}/y;

function lex(text: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\n") line++;
    if (c === "\n" || c === " " || c === "\t" || c === "\r") {
      i++;
    } else if (c === "#") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === '"' || c === "[" || c === "<" || (c === "!" && text[i + 1] === "<")) {
      const close = c === '"' ? '"' : c === "[" ? "]" : ">";
      const start = i;
      const startLine = line;
      i += c === "!" ? 2 : 1;
      while (i < text.length && text[i] !== close) {
        if (text[i] === "\\" && close !== ">") i++;
        if (text[i] === "\n") line++;
        i++;
      }
      if (i >= text.length) {
        const what = c === '"' ? "string" : c === "[" ? "character class" : "token reference";
        throw fail.invalid(`The grammar has an unterminated ${what} starting on line ${startLine}; close it with ${close} (escape a literal ${close} inside as \\${close}).`);
      }
      i++;
      tokens.push(c === '"' ? { t: "lit", empty: i - start === 2, line: startLine } : { t: "char", line: startLine });
    } else if (c === "." || c === "|") {
      tokens.push({ t: c === "." ? "char" : "|", line });
      i++;
    } else if (c === "(") {
      if (++depth > MAX_GRAMMAR_DEPTH) {
        throw fail.invalid(`The grammar nests parentheses more than ${MAX_GRAMMAR_DEPTH} deep on line ${line}; split the nesting into named rules.`);
      }
      tokens.push({ t: "(", line });
      i++;
    } else if (c === ")") {
      if (--depth < 0) throw fail.invalid(`The grammar has an unmatched ")" on line ${line}; remove it or add the "(" it closes.`);
      tokens.push({ t: ")", line });
      i++;
    } else if (c === "*" || c === "+" || c === "?") {
      tokens.push({ t: "rep", min: c === "+" ? 1 : 0, max: c === "?" ? 1 : Infinity, line });
      i++;
    } else if (c === "{") {
      REPEAT.lastIndex = i;
      const m = REPEAT.exec(text);
      if (!m) throw fail.invalid(`The grammar has a malformed repetition on line ${line}; write it as {m}, {m,} or {m,n}.`);
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] ? Number(m[3]) : Infinity;
      tokens.push({ t: "rep", min, max, line });
      i = REPEAT.lastIndex;
    } else if (text.startsWith("::=", i)) {
      tokens.push({ t: "def", line });
      i += 3;
    } else if (WORD.test(c)) {
      const start = i;
      while (i < text.length && WORD.test(text[i]!)) i++;
      tokens.push({ t: "name", v: text.slice(start, i), line });
    } else {
      throw fail.invalid(`The grammar has an unexpected character ${JSON.stringify(c)} on line ${line}; rule names use letters, digits and "-", and text goes in double quotes.`);
    }
  }
  if (depth > 0) throw fail.invalid(`The grammar leaves ${depth} "(" unclosed; add the missing ")".`);
  return tokens;
}

class Checker {
  readonly nts: Nt[] = [];
  private readonly ids = new Map<string, number>();
  /** Repeated items (max > 1) with the rule they are in, checked once nullability is known. */
  readonly repeats: Array<{ item: Item; rule: string; line: number }> = [];
  repeatTotal = 0;

  id(name: string, usedIn?: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.nts.push({ name, defined: false, usedIn, alts: [] }) - 1;
      this.ids.set(name, id);
    }
    return id;
  }

  /** Parses alternatives from `pos` up to a ")" or the end; groups become anonymous rules. */
  parse(tokens: Token[], pos: number, end: number, rule: string, product: number): { alts: Item[][]; pos: number } {
    const alts: Item[][] = [[]];
    while (pos < end) {
      const tok = tokens[pos]!;
      const seq = alts[alts.length - 1]!;
      if (tok.t === ")") break;
      pos++;
      if (tok.t === "|") alts.push([]);
      else if (tok.t === "lit") seq.push({ emptyLit: tok.empty, min: 1, max: 1 });
      else if (tok.t === "char") seq.push({ emptyLit: false, min: 1, max: 1 });
      else if (tok.t === "name") seq.push({ ref: this.id(tok.v, rule), emptyLit: false, min: 1, max: 1 });
      else if (tok.t === "def") {
        throw fail.invalid(`The grammar has "::=" inside a group or after another "::=" on line ${tok.line}; start each rule on its own line as name ::= ...`);
      } else if (tok.t === "(") {
        const next = tokens[this.findRep(tokens, pos, end)];
        const factor = next?.t === "rep" && Number.isFinite(next.max) ? Math.max(next.max, 1) : 1;
        const inner = this.parse(tokens, pos, end, rule, product * factor);
        const id = this.nts.push({ name: rule, defined: true, alts: inner.alts }) - 1;
        seq.push({ ref: id, emptyLit: false, min: 1, max: 1 });
        pos = inner.pos + 1;
      } else if (tok.t === "rep") {
        this.repeat(tok, seq, rule, product);
      }
    }
    return { alts, pos };
  }

  /** The index of the token after the group opened just before `pos`. */
  private findRep(tokens: Token[], pos: number, end: number): number {
    for (let depth = 1; pos < end; pos++) {
      const t = tokens[pos]!.t;
      if (t === "(") depth++;
      if (t === ")" && --depth === 0) return pos + 1;
    }
    return end;
  }

  private repeat(tok: { min: number; max: number; line: number }, seq: Item[], rule: string, product: number): void {
    const last = seq.pop();
    if (!last) throw fail.invalid(`The grammar has a repetition with nothing before it in rule "${rule}" on line ${tok.line}; put it after the item it repeats.`);
    const bound = Number.isFinite(tok.max) ? tok.max : tok.min;
    if (bound > MAX_GRAMMAR_REPEAT) {
      const times = Number.isFinite(tok.max) ? `up to ${bound}` : `at least ${bound}`;
      throw fail.invalid(`Rule "${rule}" repeats an item ${times} times on line ${tok.line}, more than the limit of ${MAX_GRAMMAR_REPEAT}; use * or + or a smaller bound.`);
    }
    if (tok.min > tok.max) throw fail.invalid(`Rule "${rule}" has the repetition {${tok.min},${tok.max}} on line ${tok.line}, whose minimum is above its maximum; swap them.`);
    const factor = Number.isFinite(tok.max) ? Math.max(tok.max, 1) : 1;
    if (product * factor > MAX_GRAMMAR_REPEAT_PRODUCT) {
      throw fail.invalid(`Rule "${rule}" nests repetitions that multiply to more than ${MAX_GRAMMAR_REPEAT_PRODUCT} on line ${tok.line}; lower the bounds or use * and +.`);
    }
    this.repeatTotal += Number.isFinite(tok.max) ? tok.max : Math.max(tok.min, 1);
    if (this.repeatTotal > MAX_GRAMMAR_REPEAT_TOTAL) {
      throw fail.invalid(`The grammar's repetitions add up to more than ${MAX_GRAMMAR_REPEAT_TOTAL} (at rule "${rule}", line ${tok.line}); lower the bounds or use * and +.`);
    }
    // An item that already carries a repetition is repeated as a group, as llama.cpp does.
    const item = last.min === 1 && last.max === 1 ? last : { ref: this.nts.push({ name: rule, defined: true, alts: [[last]] }) - 1, emptyLit: false, min: 1, max: 1 };
    item.min = tok.min;
    item.max = tok.max;
    seq.push(item);
    if (tok.max > 1) this.repeats.push({ item, rule, line: tok.line });
  }

  /** Which rules can match the empty text: the linear worklist algorithm over sequence counters. */
  nullable(): boolean[] {
    const result = this.nts.map(() => false);
    const watchers: Array<Array<{ owner: number; seq: { left: number } }>> = this.nts.map(() => []);
    const queue: number[] = [];
    this.nts.forEach((nt, owner) => {
      for (const alt of nt.alts) {
        const needs = alt.filter((it) => it.min > 0 && !it.emptyLit);
        if (needs.some((it) => it.ref === undefined)) continue;
        const seq = { left: needs.length };
        for (const it of needs) watchers[it.ref!]!.push({ owner, seq });
        if (seq.left === 0 && !result[owner]) queue.push(owner), (result[owner] = true);
      }
    });
    while (queue.length > 0) {
      for (const { owner, seq } of watchers[queue.pop()!]!) {
        if (--seq.left === 0 && !result[owner]) queue.push(owner), (result[owner] = true);
      }
    }
    return result;
  }

  /** The longest chain of references from `root`, walked without recursion; cycles add nothing. */
  chain(root: number): number {
    const kids = this.nts.map((nt) => [...new Set(nt.alts.flat().flatMap((it) => (it.ref === undefined ? [] : [it.ref])))]);
    const height = new Int32Array(this.nts.length).fill(-1);
    const stack: Array<[number, number]> = [[root, 0]];
    height[root] = -2;
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const mine = kids[top[0]]!;
      if (top[1] < mine.length) {
        const kid = mine[top[1]++]!;
        if (height[kid] === -1) (height[kid] = -2), stack.push([kid, 0]);
        continue;
      }
      height[top[0]] = mine.reduce((h, kid) => Math.max(h, height[kid]! >= 0 ? height[kid]! + 1 : 0), 0);
      stack.pop();
    }
    return height[root]!;
  }
}

/**
 * Throws INVALID_ARGUMENT, in one sentence, for a GBNF grammar that is empty, too long, nested too
 * deep, repeats too much or ambiguously, lacks `root` or uses an undefined rule. Run it before any
 * grammar reaches llama.cpp; `maxChars` defaults to the request limit MAX_GRAMMAR_CHARS.
 */
export function checkGbnf(gbnf: string, opts: { maxChars?: number } = {}): void {
  const maxChars = opts.maxChars ?? MAX_GRAMMAR_CHARS;
  if (gbnf.length > maxChars) throw fail.invalid(`The grammar is ${gbnf.length} characters, more than the limit of ${maxChars}; shorten it.`);
  const tokens = lex(gbnf);
  if (tokens.length === 0) throw fail.invalid("The grammar is empty; give at least a rule root ::= ... .");
  const checker = new Checker();
  let pos = 0;
  while (pos < tokens.length) {
    const name = tokens[pos]!;
    if (name.t !== "name" || tokens[pos + 1]?.t !== "def") {
      throw fail.invalid(`The grammar has text where a rule should start on line ${name.line}; each rule is name ::= ... .`);
    }
    let end = pos + 2;
    while (end < tokens.length && !(tokens[end]!.t === "name" && tokens[end + 1]?.t === "def")) end++;
    const id = checker.id(name.v);
    const parsed = checker.parse(tokens, pos + 2, end, name.v, 1);
    if (parsed.pos < end) throw fail.invalid(`The grammar has an unmatched ")" in rule "${name.v}" on line ${tokens[parsed.pos]!.line}; remove it.`);
    checker.nts[id]!.defined = true;
    appendAll(checker.nts[id]!.alts, parsed.alts);
    pos = end;
  }
  const missing = checker.nts.find((nt) => !nt.defined);
  if (missing) throw fail.invalid(`Rule "${missing.usedIn}" uses "${missing.name}", which the grammar never defines; define it or fix the name.`);
  const root = checker.nts.findIndex((nt) => nt.name === "root" && nt.defined);
  if (root < 0) throw fail.invalid("The grammar has no root rule; add root ::= ... , where generation starts.");
  const nullable = checker.nullable();
  for (const { item, rule, line } of checker.repeats) {
    if (item.emptyLit || (item.ref !== undefined && nullable[item.ref])) {
      throw fail.invalid(`Rule "${rule}" repeats something that can match nothing on line ${line}, which makes the grammar ambiguous and slow; make the repeated part require at least one character.`);
    }
  }
  const chain = checker.chain(root);
  if (chain > MAX_GRAMMAR_RULE_CHAIN) {
    throw fail.invalid(`The grammar chains ${chain} rules (and groups) one inside another from root, more than the limit of ${MAX_GRAMMAR_RULE_CHAIN}; flatten it.`);
  }
}
