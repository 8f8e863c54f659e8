/** A function call as the model wrote it: literal arguments only, never code. */
export interface ParsedCall {
  name: string;
  args: Literal[];
  kwargs: Record<string, Literal>;
}

export type Literal = string | number | boolean | null;

/**
 * Parses `NAME(arg, key=arg, ...)` where every argument is a literal (a quoted string, a number,
 * true/false/True/False, null/None). Anything else — an expression, a call, an attribute, an
 * unquoted word — is a syntax error: model output is data, and nothing in it is ever evaluated.
 */
export function parseCall(text: string): ParsedCall {
  const p = new Parser(text);
  const name = p.identifier();
  p.expect("(");
  const args: Literal[] = [];
  const kwargs: Record<string, Literal> = {};
  p.spaces();
  if (!p.eat(")")) {
    for (;;) {
      p.spaces();
      const key = p.keyword();
      const value = p.literal();
      if (key !== undefined) {
        if (key in kwargs) throw new SyntaxError(`argument "${key}" is given twice`);
        kwargs[key] = value;
      } else if (Object.keys(kwargs).length > 0) throw new SyntaxError("a positional argument follows a keyword argument");
      else args.push(value);
      p.spaces();
      if (p.eat(")")) break;
      p.expect(",");
    }
  }
  p.spaces();
  if (!p.done()) throw new SyntaxError(`unexpected text after the call: ${JSON.stringify(p.rest().slice(0, 20))}`);
  return { name, args, kwargs };
}

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?/y;
const WORDS: Record<string, Literal> = { true: true, True: true, false: false, False: false, null: null, None: null };

class Parser {
  private at = 0;
  constructor(private readonly s: string) {}

  done(): boolean {
    return this.at >= this.s.length;
  }

  rest(): string {
    return this.s.slice(this.at);
  }

  spaces(): void {
    while (/\s/.test(this.s[this.at] ?? "")) this.at++;
  }

  eat(c: string): boolean {
    if (this.s[this.at] !== c) return false;
    this.at++;
    return true;
  }

  expect(c: string): void {
    if (!this.eat(c)) throw new SyntaxError(`expected "${c}" at position ${this.at}`);
  }

  identifier(): string {
    const m = this.match(IDENT);
    if (!m) throw new SyntaxError(`expected a function name at position ${this.at}`);
    return m;
  }

  /** `key=` when present (the position is left after the "="), else undefined. */
  keyword(): string | undefined {
    const start = this.at;
    const m = this.match(IDENT);
    if (m && !(m in WORDS)) {
      this.spaces();
      if (this.eat("=")) {
        this.spaces();
        return m;
      }
    }
    this.at = start;
    return undefined;
  }

  literal(): Literal {
    const c = this.s[this.at];
    if (c === '"' || c === "'") return this.string(c);
    const num = this.match(NUMBER);
    if (num) return Number(num);
    const word = this.match(IDENT);
    if (word && word in WORDS) return WORDS[word]!;
    throw new SyntaxError(`expected a literal (string, number, true, false or null) at position ${this.at}`);
  }

  private string(quote: string): string {
    this.at++;
    let out = "";
    for (;;) {
      const c = this.s[this.at++];
      if (c === undefined) throw new SyntaxError("unterminated string");
      if (c === quote) return out;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = this.s[this.at++];
      const map: Record<string, string> = { n: "\n", t: "\t", r: "\r", "\\": "\\", '"': '"', "'": "'" };
      if (e === undefined || !(e in map)) throw new SyntaxError(`unknown escape \\${e ?? ""}`);
      out += map[e];
    }
  }

  private match(re: RegExp): string | undefined {
    re.lastIndex = this.at;
    const m = re.exec(this.s);
    if (!m) return undefined;
    this.at += m[0].length;
    return m[0];
  }
}
