// A small backtracking GBNF recognizer for tests: does a grammar accept a whole text? It covers
// what the tests use (literals, classes, ".", groups, alternatives, * + ? {m,n}, references,
// comments), tracks every end position so ambiguity costs nothing extra, and treats left
// recursion as no match. Slow and simple on purpose: it is the oracle, not the product.

type Node =
  | { k: "lit"; s: string }
  | { k: "cls"; neg: boolean; ranges: Array<[number, number]> }
  | { k: "any" }
  | { k: "ref"; name: string }
  | { k: "alt"; alts: Node[][] }
  | { k: "rep"; node: Node; min: number; max: number };

function parseRules(text: string): Map<string, Node> {
  const rules = new Map<string, Node>();
  let i = 0;
  const skip = () => {
    while (i < text.length) {
      if (text[i] === "#") while (i < text.length && text[i] !== "\n") i++;
      else if (/\s/.test(text[i]!)) i++;
      else break;
    }
  };
  const char = (): number => {
    if (text[i] !== "\\") return text.codePointAt(i++)!;
    const e = text[i + 1]!;
    i += 2;
    const hex = (n: number) => parseInt(text.slice(i, (i += n)), 16);
    const simple: Record<string, string> = { n: "\n", r: "\r", t: "\t" };
    return e === "x" ? hex(2) : e === "u" ? hex(4) : e === "U" ? hex(8) : (simple[e] ?? e).codePointAt(0)!;
  };
  const alts = (): Node => {
    const out: Node[][] = [[]];
    for (skip(); i < text.length && text[i] !== ")"; skip()) {
      if (/^[a-zA-Z0-9-]+\s*::=/.test(text.slice(i, i + 200))) break;
      const c = text[i]!;
      let node: Node;
      if (c === "|") {
        i++;
        skip();
        // As llama.cpp: a newline after "|" does not end the rule, so a trailing "|" swallows the next one.
        if (/^[a-zA-Z0-9-]+\s*::=/.test(text.slice(i, i + 200))) throw new Error(`"|" at the end of a rule before ${text.slice(i, i + 40)}`);
        out.push([]);
        continue;
      } else if (c === '"') {
        let s = "";
        for (i++; text[i] !== '"'; ) s += String.fromCodePoint(char());
        i++;
        node = { k: "lit", s };
      } else if (c === "[") {
        const neg = text[++i] === "^";
        if (neg) i++;
        const ranges: Array<[number, number]> = [];
        while (text[i] !== "]") {
          const lo = char();
          const hi = text[i] === "-" && text[i + 1] !== "]" ? (i++, char()) : lo;
          ranges.push([lo, hi]);
        }
        i++;
        node = { k: "cls", neg, ranges };
      } else if (c === ".") {
        i++;
        node = { k: "any" };
      } else if (c === "(") {
        i++;
        node = alts();
        i++;
      } else {
        const name = /^[a-zA-Z0-9-]+/.exec(text.slice(i))![0];
        i += name.length;
        node = { k: "ref", name };
      }
      const q = /^(?:[*+?]|\{(\d+)(,(\d*))?\})/.exec(text.slice(i, i + 20));
      if (q) {
        i += q[0].length;
        const [min, max] = q[0] === "*" ? [0, Infinity] : q[0] === "+" ? [1, Infinity] : q[0] === "?" ? [0, 1] : [Number(q[1]), q[2] === undefined ? Number(q[1]) : q[3] ? Number(q[3]) : Infinity];
        node = { k: "rep", node, min: min!, max: max! };
      }
      out[out.length - 1]!.push(node);
    }
    return { k: "alt", alts: out };
  };
  for (skip(); i < text.length; skip()) {
    const m = /^([a-zA-Z0-9-]+)\s*::=/.exec(text.slice(i))!;
    i += m[0].length;
    rules.set(m[1]!, alts());
  }
  return rules;
}

/** Whether `gbnf` (starting at rule `start`) accepts all of `text`. */
export function gbnfAccepts(gbnf: string, text: string, start = "root"): boolean {
  const rules = parseRules(gbnf);
  const memo = new Map<string, number[]>();
  const match = (node: Node, pos: number): number[] => {
    switch (node.k) {
      case "lit":
        return text.startsWith(node.s, pos) ? [pos + node.s.length] : [];
      case "any":
      case "cls": {
        const cp = text.codePointAt(pos);
        if (cp === undefined) return [];
        const hit = node.k === "any" || node.ranges.some(([lo, hi]) => cp >= lo && cp <= hi) !== node.neg;
        return hit ? [pos + (cp > 0xffff ? 2 : 1)] : [];
      }
      case "ref": {
        const key = `${node.name}@${pos}`;
        const known = memo.get(key);
        if (known) return known;
        memo.set(key, []);
        const rule = rules.get(node.name);
        if (!rule) throw new Error(`undefined rule ${node.name}`);
        const ends = match(rule, pos);
        memo.set(key, ends);
        return ends;
      }
      case "alt":
        return [...new Set(node.alts.flatMap((seq) => seq.reduce((ps, item) => [...new Set(ps.flatMap((p) => match(item, p)))], [pos])))];
      case "rep": {
        const ends = new Set(node.min === 0 ? [pos] : []);
        let frontier = [pos];
        for (let n = 1; n <= node.max && frontier.length > 0; n++) {
          frontier = [...new Set(frontier.flatMap((p) => match(node.node, p)))];
          if (n >= node.min) frontier = frontier.filter((p) => !ends.has(p) && ends.add(p));
        }
        return [...ends];
      }
    }
  };
  return match({ k: "ref", name: start }, 0).includes(text.length);
}
