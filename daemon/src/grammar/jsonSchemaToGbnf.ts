import { fail } from "@nanollm/shared";
import { MAX_GRAMMAR_REPEAT, MAX_SCHEMA_DEPTH, MAX_SCHEMA_GRAMMAR_CHARS, MAX_SCHEMA_NODES } from "../sessions/limits.js";
import { checkGbnf } from "./checkGbnf.js";
import { gbnfLiteral, SHARED_RULES, sharedDeps } from "./gbnfRules.js";

type Schema = Record<string, unknown>;

// Numeric bounds are common in tool schemas; a grammar cannot check them cheaply, so they stay
// annotations (the model sees them in the function docs) rather than costing the tool its grammar.
const ANNOTATIONS = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
const VALIDATION = ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "uniqueItems", "enum", "const", "anyOf", "oneOf", "$ref", "minLength", "maxLength", "format"];
const KNOWN = new Set([...ANNOTATIONS, ...VALIDATION]);
/** Formats the grammar enforces; other formats are annotations in JSON Schema and allow any string. */
const FORMATS = new Set(["date", "time", "date-time", "uuid"]);
const RULE_NAME = /^[a-zA-Z0-9-]+$/;

const isSchemaObject = (x: unknown): x is Schema => typeof x === "object" && x !== null && !Array.isArray(x);

/** Turns a JSON Schema into the GBNF grammar of the JSON texts it allows (see the class below). */
class Converter {
  private readonly rules = new Map<string, string>();
  private readonly taken = new Set<string>();
  private readonly shared = new Set<string>();
  private readonly refs = new Map<string, string>();
  private nodes = 0;
  private chars = 0;

  constructor(
    private readonly root: unknown,
    private readonly rootName: string,
  ) {
    this.taken.add(rootName);
    for (const name of Object.keys(SHARED_RULES)) this.taken.add(`${rootName}-${name}`);
  }

  grammar(): string {
    const term = this.visit(this.root, 0, "#", "");
    const order = Object.keys(SHARED_RULES).filter((name) => this.shared.has(name));
    const lines = [`${this.rootName} ::= ${term}`, ...[...this.rules].map(([name, body]) => `${name} ::= ${body}`)];
    for (const name of order) lines.push(`${this.rootName}-${name} ::= ${SHARED_RULES[name]!.replaceAll("@", this.rootName)}`);
    const text = `${lines.join("\n")}\n`;
    if (text.length > MAX_SCHEMA_GRAMMAR_CHARS) this.tooLong();
    // The limits llama.cpp needs (rule chains, repetition totals) are checkGbnf's to keep.
    try {
      checkGbnf(this.rootName === "root" ? text : `${text}root ::= ${this.rootName}\n`, { maxChars: 2 * MAX_SCHEMA_GRAMMAR_CHARS });
    } catch (err) {
      throw fail.invalid(`The JSON Schema makes too complex a grammar: ${(err as Error).message}`);
    }
    return text;
  }

  private tooLong(): never {
    throw fail.invalid(`The JSON Schema makes a grammar longer than ${MAX_SCHEMA_GRAMMAR_CHARS} characters; simplify it (fewer properties, shorter enums).`);
  }

  /** A shared rule's name, adding it (and the rules it uses) to the grammar. */
  private use(name: string): string {
    if (!this.shared.has(name)) {
      this.shared.add(name);
      for (const dep of sharedDeps(name)) this.use(dep);
    }
    return `${this.rootName}-${name}`;
  }

  /** A new rule name from `hint`, unique in this grammar and starting with the root's name. */
  private fresh(hint: string): string {
    const base = `${this.rootName}-${hint.replace(/[^a-zA-Z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40) || "main"}`;
    let name = base;
    for (let n = 2; this.taken.has(name); n++) name = `${base}${n}`;
    this.taken.add(name);
    return name;
  }

  private add(name: string, body: string): string {
    this.chars += name.length + body.length + 6;
    if (this.chars > MAX_SCHEMA_GRAMMAR_CHARS) this.tooLong();
    this.rules.set(name, body);
    return name;
  }

  private visit(schema: unknown, depth: number, path: string, hint: string): string {
    if (++this.nodes > MAX_SCHEMA_NODES) throw fail.invalid(`The JSON Schema has more than ${MAX_SCHEMA_NODES} subschemas; simplify it.`);
    if (depth > MAX_SCHEMA_DEPTH) throw fail.invalid(`The JSON Schema nests deeper than ${MAX_SCHEMA_DEPTH} levels at ${path}; flatten it.`);
    if (schema === true) return this.use("value");
    if (!isSchemaObject(schema)) {
      throw fail.invalid(`The JSON Schema at ${path} is ${schema === false ? "false, which allows no value" : "not an object"}; give an object such as {"type": "string"}.`);
    }
    const keys = Object.keys(schema);
    for (const key of keys) {
      if (!KNOWN.has(key)) {
        throw fail.invalid(`The JSON Schema keyword "${key}" at ${path} is not supported in constrained replies; remove it (state the constraint in "description" instead).`);
      }
    }
    if (schema.uniqueItems === true) throw fail.invalid(`The JSON Schema keyword "uniqueItems" at ${path} is not supported in constrained replies; remove it.`);
    const combiner = ["$ref", "anyOf", "oneOf"].find((k) => k in schema);
    const clash = combiner && keys.find((k) => k !== combiner && VALIDATION.includes(k));
    if (combiner && clash) {
      throw fail.invalid(`The JSON Schema at ${path} combines "${combiner}" with "${clash}"; move "${clash}" into the schemas that "${combiner}" names.`);
    }
    if (combiner === "$ref") return this.ref(schema.$ref, depth, path);
    if ("const" in schema) return this.add(this.fresh(hint), `${this.json(schema.const)} ${this.use("space")}`);
    if ("enum" in schema) {
      if (!Array.isArray(schema.enum) || schema.enum.length === 0) throw fail.invalid(`The JSON Schema "enum" at ${path} is not a non-empty array; list at least one value.`);
      return this.add(this.fresh(hint), `(${schema.enum.map((v) => this.json(v)).join(" | ")}) ${this.use("space")}`);
    }
    if (combiner) {
      const branches = schema[combiner];
      if (!Array.isArray(branches) || branches.length === 0) throw fail.invalid(`The JSON Schema "${combiner}" at ${path} is not a non-empty array; list at least one schema.`);
      const name = this.fresh(hint);
      return this.add(name, branches.map((b, i) => this.visit(b, depth + 1, `${path}/${combiner}/${i}`, `${hint}-${i}`)).join(" | "));
    }
    const type = schema.type ?? ("properties" in schema || "additionalProperties" in schema ? "object" : "items" in schema ? "array" : undefined);
    if (type === undefined) return this.use("value");
    if (!Array.isArray(type)) return this.typed(schema, type, depth, path, hint);
    if (type.length === 0) throw fail.invalid(`The JSON Schema "type" at ${path} is an empty list; name at least one type.`);
    const name = this.fresh(hint);
    return this.add(name, type.map((t) => this.typed(schema, t, depth, path, `${hint}-${String(t)}`)).join(" | "));
  }

  /** `value` as GBNF for enum and const: its JSON text, with room for whitespace inside arrays and objects. */
  private json(value: unknown): string {
    const sp = this.use("space");
    const list = (open: string, items: string[], close: string) => [`"${open}" ${sp}`, items.join(` "," ${sp} `), `"${close}"`].filter(Boolean).join(" ");
    if (Array.isArray(value)) return list("[", value.map((v) => `${this.json(v)} ${sp}`), "]");
    if (isSchemaObject(value)) return list("{", Object.entries(value).map(([k, v]) => `${gbnfLiteral(JSON.stringify(k))} ${sp} ":" ${sp} ${this.json(v)} ${sp}`), "}");
    return gbnfLiteral(JSON.stringify(value) ?? "null");
  }

  private typed(schema: Schema, type: unknown, depth: number, path: string, hint: string): string {
    switch (type) {
      case "string":
        return this.string(schema, path, hint);
      case "integer":
      case "number":
      case "boolean":
      case "null":
        return this.use(type);
      case "object":
        return this.object(schema, depth, path, hint);
      case "array":
        return this.array(schema, depth, path, hint);
      default:
        throw fail.invalid(`The JSON Schema "type" at ${path} is ${JSON.stringify(type)}; use string, number, integer, boolean, null, object or array.`);
    }
  }

  private string(schema: Schema, path: string, hint: string): string {
    const format = typeof schema.format === "string" && FORMATS.has(schema.format) ? schema.format : undefined;
    if (format) return this.add(this.fresh(hint), `"\\"" ${this.use(format)} "\\"" ${this.use("space")}`);
    if (schema.minLength === undefined && schema.maxLength === undefined) return this.use("string");
    const [min, max] = this.bounds(schema, "minLength", "maxLength", path);
    return this.add(this.fresh(hint), `"\\"" ${repeated(this.use("char"), min, max)} "\\"" ${this.use("space")}`);
  }

  private array(schema: Schema, depth: number, path: string, hint: string): string {
    const name = this.fresh(hint);
    if (Array.isArray(schema.items)) throw fail.invalid(`The JSON Schema "items" at ${path} is a list (a tuple); give one schema for all items.`);
    const item = schema.items === undefined ? this.use("value") : this.visit(schema.items, depth + 1, `${path}/items`, `${hint}-item`);
    const [min, max] = this.bounds(schema, "minItems", "maxItems", path);
    const sp = this.use("space");
    const rest = `("," ${sp} ${item})`;
    const inner = min === 0 ? (max === 0 ? "" : `(${item} ${repeated(rest, 0, max === undefined ? undefined : max - 1)})?`) : `${item} ${repeated(rest, min - 1, max === undefined ? undefined : max - 1)}`;
    return this.add(name, `"[" ${sp} ${inner} "]" ${sp}`.replace(/ {2,}/g, " "));
  }

  private object(schema: Schema, depth: number, path: string, hint: string): string {
    const name = this.fresh(hint);
    const sp = this.use("space");
    const props = schema.properties ?? {};
    const required = schema.required ?? [];
    const extra = schema.additionalProperties;
    if (!isSchemaObject(props)) throw fail.invalid(`The JSON Schema "properties" at ${path} is not an object; map each property name to its schema.`);
    if (!Array.isArray(required) || required.some((r) => typeof r !== "string" || !(r in props))) {
      throw fail.invalid(`The JSON Schema "required" at ${path} is not a list of names from "properties"; list only declared properties.`);
    }
    const keys = Object.keys(props);
    if (keys.length === 0) {
      if (extra === false) return this.add(name, `"{" ${sp} "}" ${sp}`);
      const value = extra === undefined || extra === true ? this.use("value") : this.visit(extra, depth + 1, `${path}/additionalProperties`, `${hint}-value`);
      const pair = `${this.use("string")} ":" ${sp} ${value}`;
      return this.add(name, `"{" ${sp} (${pair} ("," ${sp} ${pair})*)? "}" ${sp}`);
    }
    if (extra !== undefined && extra !== false) {
      throw fail.invalid(`The JSON Schema at ${path} allows "additionalProperties" besides "properties", which is not supported; set "additionalProperties": false.`);
    }
    const pairs = keys.map((k) => `${gbnfLiteral(JSON.stringify(k))} ${sp} ":" ${sp} ${this.visit(props[k], depth + 1, `${path}/properties/${k}`, `${hint}-${k}`)}`);
    const isRequired = keys.map((k) => required.includes(k));
    // Properties come in declared order; each optional one may be left out, so a comma is due
    // before a pair only once an earlier pair was written. tails[i]: pairs i.. after a written
    // pair; firsts[i]: pairs i.. when none was written yet. Built from the end, as named rules,
    // so the grammar stays linear in the number of properties. An empty alternative goes first:
    // llama.cpp reads past the newline after a trailing "|" into the next rule.
    const n = keys.length;
    const tails: string[] = new Array<string>(n + 1).fill("");
    const firsts: string[] = new Array<string>(n + 1).fill("");
    let restRequired = true;
    for (let i = n - 1; i >= 0; i--) {
      const comma = `"," ${sp} ${pairs[i]}`;
      const tail = `${isRequired[i] ? comma : `(${comma})?`} ${tails[i + 1]}`.trim();
      restRequired &&= isRequired[i]!;
      tails[i] = i === n - 1 || restRequired ? tail : this.add(this.fresh(`${hint}-after-${keys[i]}`), tail);
      const first = `${pairs[i]} ${tails[i + 1]}`.trim();
      firsts[i] = isRequired[i] ? first : this.add(this.fresh(`${hint}-from-${keys[i]}`), firsts[i + 1] ? `${first} | ${firsts[i + 1]}` : `| ${first}`);
    }
    return this.add(name, `"{" ${sp} ${firsts[0]} "}" ${sp}`);
  }

  /** [min, max] from two bound keywords, checked to be whole numbers within the grammar's limit. */
  private bounds(schema: Schema, minKey: string, maxKey: string, path: string): [number, number | undefined] {
    const check = (key: string): number | undefined => {
      const v = schema[key];
      if (v === undefined) return undefined;
      if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw fail.invalid(`The JSON Schema "${key}" at ${path} is not a whole number of 0 or more; fix it.`);
      if (v > MAX_GRAMMAR_REPEAT) throw fail.invalid(`The JSON Schema "${key}" at ${path} is ${v}, more than the grammar limit of ${MAX_GRAMMAR_REPEAT}; lower it or remove it.`);
      return v;
    };
    const min = check(minKey) ?? 0;
    const max = check(maxKey);
    if (max !== undefined && min > max) throw fail.invalid(`The JSON Schema at ${path} has "${minKey}" above "${maxKey}"; swap them.`);
    return [min, max];
  }

  private ref(ref: unknown, depth: number, path: string): string {
    if (ref === "#" && depth === 0) throw fail.invalid(`The JSON Schema at # is only "$ref": "#", which allows no finite value; describe the value itself.`);
    if (ref === "#") return this.rootName;
    const known = typeof ref === "string" ? this.refs.get(ref) : undefined;
    if (known) return known;
    const m = typeof ref === "string" ? /^#\/(\$defs|definitions)\/(.+)$/.exec(ref) : null;
    if (!m) throw fail.invalid(`The JSON Schema "$ref" ${JSON.stringify(ref)} at ${path} is not supported; point it into "#/$defs/..." or "#/definitions/...".`);
    let target: unknown = this.root;
    const segments = [m[1]!, ...m[2]!.split("/")].map((s) => decodeURIComponent(s).replaceAll("~1", "/").replaceAll("~0", "~"));
    for (const s of segments) target = isSchemaObject(target) && Object.hasOwn(target, s) ? target[s] : undefined;
    if (target === undefined) throw fail.invalid(`The JSON Schema "$ref" ${JSON.stringify(ref)} at ${path} points at nothing; define it under "$defs".`);
    const name = this.fresh(`def-${segments[segments.length - 1]}`);
    this.refs.set(ref as string, name);
    return this.add(name, this.visit(target, depth + 1, ref as string, `def-${segments[segments.length - 1]}`));
  }
}

/** `unit` repeated min..max times (max undefined: no upper bound), as GBNF. */
function repeated(unit: string, min: number, max: number | undefined): string {
  if (max === 0) return "";
  if (max === undefined) return min === 0 ? `${unit}*` : min === 1 ? `${unit}+` : `${unit}{${min},}`;
  if (min === max) return min === 1 ? unit : `${unit}{${min}}`;
  return min === 0 && max === 1 ? `${unit}?` : `${unit}{${min},${max}}`;
}

/**
 * The GBNF grammar (llama.cpp's dialect) of the JSON texts `schema` allows, strict as OpenAI's
 * json_schema: properties in declared order, only declared ones unless a schema has none. The
 * start rule is `rootName` (default "root"); every other rule name starts with `rootName-`, so
 * the text can be joined with other rules. Unsupported keywords and oversized schemas throw
 * INVALID_ARGUMENT.
 */
export function jsonSchemaToGbnf(schema: unknown, opts: { rootName?: string } = {}): string {
  const rootName = opts.rootName ?? "root";
  if (!RULE_NAME.test(rootName)) throw fail.invalid(`The grammar rule name ${JSON.stringify(rootName)} is not valid; use letters, digits and "-".`);
  return new Converter(schema, rootName).grammar();
}
