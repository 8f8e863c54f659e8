import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { NanoError } from "@nanollm/shared";
import { jsonSchemaToGbnf } from "@nanollm/daemon/dist/grammar/jsonSchemaToGbnf.js";
import { checkGbnf } from "@nanollm/daemon/dist/grammar/checkGbnf.js";
import { gbnfAccepts } from "./helpers/gbnfMatch.js";

/** Asserts that `fn` throws INVALID_ARGUMENT with one sentence matching `pattern`. */
function invalid(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NanoError, `not a NanoError: ${String(err)}`);
    assert.equal(err.code, "INVALID_ARGUMENT");
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes("\n"), "one line");
    return true;
  });
}

interface Case {
  name: string;
  schema: object;
  good: unknown[];
  /** JSON texts (already serialized, so they can be malformed) the grammar must refuse. */
  bad: string[];
}

const node = { type: "object", properties: { value: { type: "integer" }, children: { type: "array", items: { $ref: "#/$defs/node" } } }, required: ["value", "children"] };
const cases: Case[] = [
  { name: "object with required properties", schema: { type: "object", properties: { name: { type: "string" }, age: { type: "integer" } }, required: ["name", "age"] }, good: [{ name: "Ann", age: 41 }, { name: 'q"\\\n', age: -3 }], bad: ['{"name":"Ann"}', '{"age":41,"name":"Ann"}', '{"name":"Ann","age":"41"}', '{"name":"Ann","age":41,"x":1}', '{"name":"Ann","age":4.5}'] },
  { name: "optional properties around a required one", schema: { type: "object", properties: { a: { type: "number" }, b: { type: "boolean" }, c: { type: "null" } }, required: ["b"] }, good: [{ b: true }, { a: 1.5e3, b: false }, { b: true, c: null }, { a: -0.25, b: true, c: null }], bad: ["{}", '{"a":1}', '{"b":true,"a":1}', '{"b":1}', '{"b":true,"c":null,"d":1}', '{,"b":true}'] },
  { name: "all properties optional", schema: { type: "object", properties: { x: { type: "string" }, y: { type: "string" }, z: { type: "string" } } }, good: [{}, { y: "" }, { x: "1", z: "3" }, { x: "1", y: "2", z: "3" }], bad: ['{"x":"1",}', '{"y":"2","x":"1"}', '{"w":"0"}', '{"x":1}'] },
  { name: "nested objects", schema: { type: "object", properties: { user: { type: "object", properties: { id: { type: "integer" }, tags: { type: "object", properties: { k: { type: "string" } }, required: ["k"] } }, required: ["id", "tags"] } }, required: ["user"] }, good: [{ user: { id: 1, tags: { k: "v" } } }], bad: ['{"user":{"id":1}}', '{"user":{"id":1,"tags":{}}}', '{"user":{"id":1,"tags":{"k":"v"},"more":1}}'] },
  { name: "bounded array of strings", schema: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 }, good: [["a"], ["a", "b", "c"]], bad: ["[]", '["a","b","c","d"]', "[1]", '["a",]'] },
  { name: "array without items", schema: { type: "array" }, good: [[], [1, "two", { three: [3] }, null]], bad: ["[1,]", "{}"] },
  { name: "string enum", schema: { type: "string", enum: ["red", "green"] }, good: ["red", "green"], bad: ['"blue"', '"Red"', "red"] },
  { name: "enum and const of any JSON value", schema: { type: "object", properties: { e: { enum: [1, "one", null, [1, 2], { a: true }] }, k: { const: { v: "x" } } }, required: ["e", "k"] }, good: [{ e: 1, k: { v: "x" } }, { e: [1, 2], k: { v: "x" } }, { e: { a: true }, k: { v: "x" } }, { e: null, k: { v: "x" } }], bad: ['{"e":2,"k":{"v":"x"}}', '{"e":1,"k":{"v":"y"}}', '{"e":"two","k":{"v":"x"}}'] },
  { name: "anyOf string or null", schema: { anyOf: [{ type: "string" }, { type: "null" }], title: "Note", default: null }, good: ["text", null], bad: ["1", "false"] },
  { name: "oneOf of two object shapes", schema: { oneOf: [{ type: "object", properties: { cat: { type: "string" } }, required: ["cat"] }, { type: "object", properties: { dog: { type: "integer" } }, required: ["dog"] }] }, good: [{ cat: "tom" }, { dog: 2 }], bad: ['{"cat":2}', '{"cat":"tom","dog":2}', "{}"] },
  { name: "type as a list", schema: { type: ["integer", "null", "string"], maxLength: 2 }, good: [7, null, "ab"], bad: ['"abc"', "1.5", "true"] },
  { name: "recursive $ref in $defs", schema: { $ref: "#/$defs/node", $defs: { node } }, good: [{ value: 1, children: [] }, { value: 1, children: [{ value: 2, children: [{ value: 3, children: [] }] }] }], bad: ['{"value":1}', '{"value":1,"children":[{"value":2}]}'] },
  { name: "$ref into definitions", schema: { type: "object", properties: { when: { $ref: "#/definitions/day" } }, required: ["when"], definitions: { day: { type: "string", format: "date" } } }, good: [{ when: "2026-11-26" }], bad: ['{"when":"2026-13-01"}', '{"when":"26-11-2026"}'] },
  { name: "recursive $ref to the whole schema", schema: { type: "object", properties: { name: { type: "string" }, parent: { $ref: "#" } }, required: ["name"] }, good: [{ name: "a" }, { name: "a", parent: { name: "b", parent: { name: "c" } } }], bad: ['{"name":"a","parent":{}}', '{"parent":{"name":"b"}}'] },
  { name: "empty schema is any value", schema: {}, good: [1, "s", null, true, [], { a: [{ b: null }] }, -1.5e-7], bad: ["", "tru", "{a:1}", "[1 2]", "01"] },
  { name: "string formats and lengths", schema: { type: "object", properties: { id: { type: "string", format: "uuid" }, at: { type: "string", format: "date-time" }, t: { type: "string", format: "time" }, code: { type: "string", minLength: 2, maxLength: 4 } }, required: ["id", "at", "t", "code"] }, good: [{ id: "123e4567-e89b-12d3-a456-426614174000", at: "2026-11-26T01:02:03Z", t: "23:59:60.5+01:00", code: "ab" }], bad: ['{"id":"123e4567","at":"2026-11-26T01:02:03Z","t":"00:00:00Z","code":"ab"}', '{"id":"123e4567-e89b-12d3-a456-426614174000","at":"2026-11-26","t":"00:00:00Z","code":"ab"}', '{"id":"123e4567-e89b-12d3-a456-426614174000","at":"2026-11-26T01:02:03Z","t":"00:00:00Z","code":"abcde"}'] },
  { name: "map with typed additionalProperties", schema: { type: "object", additionalProperties: { type: "number" } }, good: [{}, { a: 1, "b c": 2.5 }], bad: ['{"a":"1"}', '{"a":1,}'] },
  { name: "closed empty object", schema: { type: "object", additionalProperties: false }, good: [{}], bad: ['{"a":1}'] },
];

describe("jsonSchemaToGbnf", () => {
  for (const c of cases) {
    it(`${c.name}: accepts valid JSON, refuses invalid, passes checkGbnf`, () => {
      const gbnf = jsonSchemaToGbnf(c.schema);
      checkGbnf(gbnf);
      for (const value of c.good) {
        for (const text of [JSON.stringify(value), JSON.stringify(value, null, 2)]) {
          assert.ok(gbnfAccepts(gbnf, text), `should accept ${text}\n${gbnf}`);
        }
      }
      for (const text of c.bad) assert.ok(!gbnfAccepts(gbnf, text), `should refuse ${text}\n${gbnf}`);
    });
  }

  it("names the start rule as asked and prefixes every other rule, so rules can be added", () => {
    const gbnf = jsonSchemaToGbnf({ type: "object", properties: { root: { type: "string" }, space: { type: "integer" } }, required: ["root", "space"] }, { rootName: "toolcall" });
    const names = [...gbnf.matchAll(/^([a-zA-Z0-9-]+) ::=/gm)].map((m) => m[1]!);
    assert.equal(names[0], "toolcall");
    assert.ok(names.slice(1).every((n) => n.startsWith("toolcall-")), names.join(" "));
    assert.equal(new Set(names).size, names.length, "unique names");
    const joined = `${gbnf}root ::= toolcall "</tool_call>"\n`;
    checkGbnf(joined);
    assert.ok(gbnfAccepts(joined, '{"root": "x", "space": 1}\n</tool_call>'));
  });

  it("keeps numeric bounds as annotations: a tool with them still gets its grammar", () => {
    const gbnf = jsonSchemaToGbnf({ type: "object", properties: { n: { type: "integer", minimum: 1, maximum: 10 } }, required: ["n"] });
    assert.match(gbnf, /^root ::= /);
  });

  it("refuses unsupported keywords, naming them", () => {
    invalid(() => jsonSchemaToGbnf({ type: "string", pattern: "^a+$" }), /keyword "pattern" at #.*remove it/);
    invalid(() => jsonSchemaToGbnf({ type: "object", patternProperties: { "^x": {} } }), /"patternProperties"/);
    invalid(() => jsonSchemaToGbnf({ type: "object", properties: { a: { if: { type: "string" }, then: {} } } }), /"if" at #\/properties\/a/);
    invalid(() => jsonSchemaToGbnf({ $ref: "https://example.com/s.json" }), /\$ref.*#\/\$defs/);
    invalid(() => jsonSchemaToGbnf({ $ref: "#/$defs/missing", $defs: {} }), /points at nothing/);
    invalid(() => jsonSchemaToGbnf({ type: "object", properties: { a: {} }, required: ["b"] }), /"required"/);
    invalid(() => jsonSchemaToGbnf({ type: "string", maxLength: 5000 }), /"maxLength" at # is 5000, more than the grammar limit of 1000/);
    invalid(() => jsonSchemaToGbnf({}, { rootName: "tool_call" }), /rule name "tool_call"/);
    invalid(() => jsonSchemaToGbnf({ $ref: "#" }), /allows no finite value/);
    invalid(() => jsonSchemaToGbnf({ anyOf: [{ type: "string" }], type: "string" }), /combines "anyOf" with "type"/);
    invalid(() => jsonSchemaToGbnf({ type: "array", items: { type: "string" }, uniqueItems: true }), /"uniqueItems"/);
  });

  it("bounds the work: depth, subschemas, grammar length", () => {
    let deep: object = { type: "string" };
    for (let i = 0; i < 100; i++) deep = { type: "array", items: deep };
    invalid(() => jsonSchemaToGbnf(deep), /deeper than 64 levels/);
    const wide = { type: "object", properties: Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`p${i}`, {}])) };
    invalid(() => jsonSchemaToGbnf(wide), /more than 10000 subschemas/);
    const long = { enum: Array.from({ length: 2000 }, (_, i) => `${i}`.padEnd(1000, "x")) };
    invalid(() => jsonSchemaToGbnf(long), /longer than 1000000 characters/);
    const optional = { type: "object", properties: Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`p${i}`, { type: "integer" }])) };
    invalid(() => jsonSchemaToGbnf(optional), /too complex a grammar: The grammar chains \d+ rules/);
    const lengths = { type: "object", properties: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`p${i}`, { type: "string", maxLength: 1000 }])) };
    invalid(() => jsonSchemaToGbnf(lengths), /too complex a grammar: The grammar's repetitions add up to more than 100000/);
  });
});

const classics: Record<string, [string, string]> = {
  json: [
    `root ::= object
value ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws
string ::=
  "\\"" (
    [^"\\\\\\x7F\\x00-\\x1F] |
    "\\\\" (["\\\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
# Optional space
ws ::= | " " | "\\n" [ \\t]{0,20}
`,
    '{"a": [1, "x\\"y", {"b": null}]}',
  ],
  list: ['root ::= item+\nitem ::= "- " [^\\n]+ "\\n"\n', "- milk\n- eggs\n"],
  arithmetic: [
    `root  ::= (expr "=" ws term "\\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \\t\\n]*
`,
    "(a+1)*2 = x\n",
  ],
  tokens: ['root ::= "<think>" [^<]* <|im_end|> !<[42]>? .\n', "<think>hm"],
};

describe("checkGbnf", () => {
  for (const [name, [gbnf, sample]] of Object.entries(classics)) {
    it(`accepts the ${name} grammar`, () => {
      checkGbnf(gbnf);
      if (name !== "tokens") assert.ok(gbnfAccepts(gbnf, sample), "the oracle agrees the grammar is what we think");
    });
  }

  // The sample grammars llama.cpp ships (c, chess, english, japanese, json ...), while its sources are installed.
  const shipped = path.join(import.meta.dirname, "../../node_modules/node-llama-cpp/llama/grammars");
  it("accepts every grammar llama.cpp ships", { skip: !fs.existsSync(shipped) && "llama.cpp's grammars are not installed" }, () => {
    const files = fs.readdirSync(shipped).filter((f) => f.endsWith(".gbnf"));
    assert.ok(files.length >= 5, files.join(" "));
    for (const f of files) checkGbnf(fs.readFileSync(path.join(shipped, f), "utf8"));
  });

  it("refuses the shapes that crash or stall llama.cpp's parser, fast", () => {
    const deep = `root ::= ${"(".repeat(20_000)}"a"${")".repeat(20_000)}`;
    const slow = 'root ::= ("a"? "a"? "a"? "a"?){0,100} "b"';
    for (const [gbnf, pattern] of [
      [deep, /nests parentheses more than 64 deep on line 1/],
      [slow, /Rule "root" repeats something that can match nothing/],
    ] as const) {
      const start = performance.now();
      invalid(() => checkGbnf(gbnf), pattern);
      // Bounded, not fast: a parser stuck in the repetition would take minutes; 2 s covers a busy CI box.
      assert.ok(performance.now() - start < 2000, `took ${performance.now() - start} ms`);
    }
  });

  it("refuses each malformed or oversized grammar with one sentence", () => {
    invalid(() => checkGbnf(""), /empty/);
    invalid(() => checkGbnf("  # only a comment\n"), /empty/);
    invalid(() => checkGbnf(`root ::= "${"a".repeat(100_000)}"`), /more than the limit of 100000/);
    checkGbnf(`root ::= "${"a".repeat(100_000)}"`, { maxChars: 1_000_000 });
    invalid(() => checkGbnf('item ::= "a"'), /no root rule/);
    invalid(() => checkGbnf("root ::= item+\nitem ::= thing"), /Rule "item" uses "thing", which the grammar never defines/);
    invalid(() => checkGbnf('root ::= "abc'), /unterminated string starting on line 1/);
    invalid(() => checkGbnf('root ::= "ab\\"'), /unterminated string/);
    invalid(() => checkGbnf("root ::= [a-z\\]"), /unterminated character class/);
    invalid(() => checkGbnf('root ::= ("a"'), /unclosed/);
    invalid(() => checkGbnf('root ::= "a")'), /unmatched "\)"/);
    invalid(() => checkGbnf('root ::= "a"{0,1001}'), /up to 1001 times.*limit of 1000/);
    invalid(() => checkGbnf('root ::= "a"{5000,}'), /at least 5000 times.*limit of 1000/);
    invalid(() => checkGbnf('root ::= (("a"{0,100}){0,10}){0,20}'), /multiply to more than 10000/);
    invalid(() => checkGbnf(`root ::= ${Array.from({ length: 101 }, () => '"a"{1000}').join(" ")}`), /add up to more than 100000/);
    invalid(() => checkGbnf('root ::= ("a" | "")*'), /can match nothing/);
    invalid(() => checkGbnf('root ::= x+\nx ::= y "b"?\ny ::= "a"?'), /can match nothing/);
    invalid(() => checkGbnf('root ::= "a"{2,1}'), /minimum is above its maximum/);
    invalid(() => checkGbnf('root ::= "a"{1,x}'), /malformed repetition/);
    invalid(() => checkGbnf("root ::= *"), /nothing before it/);
    invalid(() => checkGbnf('"a" ::= root'), /where a rule should start/);
    const chain = Array.from({ length: 1200 }, (_, i) => `r${i} ::= r${i + 1}`).join("\n");
    invalid(() => checkGbnf(`root ::= r0\n${chain}\nr1200 ::= "x"`), /chains 1201 rules/);
  });

  it("accepts escapes inside strings and classes, and parentheses there", () => {
    checkGbnf('root ::= "(\\"(" [)\\]\\\\(] "\\\\" ")" # ((( in a comment\n');
  });
});
