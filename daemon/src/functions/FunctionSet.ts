import { fail, type FunctionDecl } from "@nanollm/shared";
import { BUILTINS } from "./builtins.js";
import { MAX_FUNCTIONS, MAX_PARAMETERS_CHARS, parseJsonLimited } from "../sessions/limits.js";
import { parseCall, type Literal, type ParsedCall } from "./parseCall.js";

export interface FunctionSpec {
  name: string;
  description: string;
  /** JSON schema of the arguments object, parsed; undefined when the function takes none. */
  schema: JsonSchema | undefined;
  clientSide: boolean;
}

interface JsonSchema {
  type?: string;
  properties?: Record<string, { type?: string; description?: string }>;
  required?: string[];
}

/** A call found in the reply: either parsed and matched to a function, or an error for the model. */
export type FoundCall = { name: string; argumentsJson: string; spec: FunctionSpec } | { name: string; error: string };

// Inline calls are upper-case names, as the reference's bot functions are.
const CALL_START = /(?<![A-Za-z0-9_])([A-Z][A-Z0-9_]*)\(/g;

/** The functions enabled in one session: their docs for the prompt, and call detection. */
export class FunctionSet {
  private constructor(readonly specs: FunctionSpec[]) {}

  static readonly none = new FunctionSet([]);

  /**
   * Built-ins by name plus client-declared functions; bad declarations are INVALID_ARGUMENT.
   * Inline calls (`NAME(args)`) need upper-case names; "tools" names (the HTTP APIs' tools, called
   * only through a template's tool-call format) follow OpenAI's rule instead.
   */
  static build(builtins: readonly string[], client: readonly FunctionDecl[], names: "inline" | "tools" = "inline"): FunctionSet {
    const specs: FunctionSpec[] = [];
    const seen = new Set<string>();
    const add = (spec: FunctionSpec) => {
      if (seen.has(spec.name)) throw fail.invalid(`Function ${spec.name} is declared twice; give each function one name.`);
      seen.add(spec.name);
      specs.push(spec);
    };
    for (const name of builtins) {
      const builtin = BUILTINS[name];
      if (!builtin) throw fail.invalid(`There is no built-in function ${name}; the built-ins are ${Object.keys(BUILTINS).join(", ")}.`);
      add({ name, description: builtin.description, schema: undefined, clientSide: false });
    }
    if (client.length > MAX_FUNCTIONS) throw fail.invalid(`${client.length} client functions are declared, more than the limit of ${MAX_FUNCTIONS}; declare fewer.`);
    for (const decl of client) {
      if (names === "tools") {
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(decl.name)) throw fail.invalid(`Tool name "${decl.name.slice(0, 64)}" must be 1 to 64 letters, digits, _ or - (e.g. get_weather).`);
      } else if (!/^[A-Z][A-Z0-9_]{0,63}$/.test(decl.name)) {
        throw fail.invalid(`Function name "${decl.name.slice(0, 64)}" must be upper case letters, digits and _ (e.g. WEATHER), starting with a letter.`);
      }
      add({ name: decl.name, description: decl.description.slice(0, 2000), schema: parseSchema(decl), clientSide: true });
    }
    return new FunctionSet(specs);
  }

  get empty(): boolean {
    return this.specs.length === 0;
  }

  /**
   * The text added to the system prompt: the reference's generate_docs() for inline calls, or a
   * JSON tool list (Hermes style) for templates that delimit tool calls.
   */
  docs(style: "inline" | "tools" = "inline"): string {
    if (this.empty) return "";
    if (style === "tools") {
      const tools = this.specs.map((f) => JSON.stringify({ type: "function", function: { name: f.name, description: f.description, parameters: f.schema ?? { type: "object", properties: {} } } }));
      return (
        "You may call one or more functions to assist with the user query. The functions are listed within <tools></tools>:\n<tools>\n" +
        tools.join("\n") +
        '\n</tools>\nTo call a function, reply with a JSON object {"name": <function-name>, "arguments": <args-object>} in the tool call format of this chat.'
      );
    }
    const lines = this.specs.map((f) => `* \`${f.name}(${Object.keys(f.schema?.properties ?? {}).join(", ")})\` - ${f.description}`);
    return (
      "You are able to call the Python functions defined below, and the returned values will be added to the chat:\n\n" +
      lines.join("\n") +
      "\n\nFor example, if the user asks for the temperature, call the WEATHER() function."
    );
  }

  /**
   * A complete inline call that ends exactly at the end of `text` and starts at or after `from`;
   * undefined when there is none yet (or the call is still being written).
   */
  callAtEnd(text: string, from: number): FoundCall | undefined {
    if (!text.endsWith(")")) return undefined;
    let last: RegExpExecArray | undefined;
    for (const m of text.slice(from).matchAll(CALL_START)) last = m;
    if (!last) return undefined;
    const source = text.slice(from + last.index);
    let parsed: ParsedCall;
    try {
      parsed = parseCall(source);
    } catch (err) {
      // An open string may still be closed by later tokens; anything else is a malformed call.
      if ((err as Error).message === "unterminated string") return undefined;
      return { name: last[1]!, error: `${last[1]} was called with bad arguments (${(err as Error).message})` };
    }
    const spec = this.specs.find((f) => f.name === parsed.name);
    if (!spec) return { name: parsed.name, error: `there is no function ${parsed.name}; the functions are ${this.specs.map((f) => f.name).join(", ")}` };
    try {
      return { name: spec.name, argumentsJson: JSON.stringify(bindArguments(spec, parsed)), spec };
    } catch (err) {
      return { name: spec.name, error: `${spec.name} was called with bad arguments (${(err as Error).message})` };
    }
  }

  /** A JSON tool call (`{"name": ..., "arguments": {...}}`, or "parameters" as Llama 3.1 writes). */
  toolCall(json: string): FoundCall {
    let call: { name?: unknown; arguments?: unknown; parameters?: unknown };
    try {
      call = JSON.parse(json) as typeof call;
    } catch {
      return { name: "?", error: "the tool call is not valid JSON" };
    }
    const name = typeof call?.name === "string" ? call.name : "?";
    const spec = this.specs.find((f) => f.name === name);
    if (!spec) return { name, error: `there is no function ${name}; the functions are ${this.specs.map((f) => f.name).join(", ")}` };
    const args = call.arguments ?? call.parameters ?? {};
    if (typeof args !== "object" || args === null || Array.isArray(args)) return { name, error: `${name} was called with bad arguments (arguments must be an object)` };
    try {
      return { name, argumentsJson: JSON.stringify(bindArguments(spec, { name, args: [], kwargs: args as Record<string, Literal> })), spec };
    } catch (err) {
      return { name, error: `${name} was called with bad arguments (${(err as Error).message})` };
    }
  }

  /** JSON schema of any valid tool call: one of the functions by name, with its arguments. */
  toolCallSchema(): object {
    return {
      oneOf: this.specs.map((f) => ({
        type: "object",
        properties: { name: { const: f.name }, arguments: f.schema ?? { type: "object", properties: {} } },
        required: ["name", "arguments"],
      })),
    };
  }

  /** The declarations, as the API returns them. */
  decls(): FunctionDecl[] {
    return this.specs.map((f) => ({ name: f.name, description: f.description, parametersJson: f.schema ? JSON.stringify(f.schema) : "" }));
  }

  builtinNames(): string[] {
    return this.specs.filter((f) => !f.clientSide).map((f) => f.name);
  }

  clientDecls(): FunctionDecl[] {
    return this.decls().filter((d) => this.specs.find((f) => f.name === d.name)?.clientSide);
  }
}

function parseSchema(decl: FunctionDecl): JsonSchema | undefined {
  if (!decl.parametersJson) return undefined;
  const schema = parseJsonLimited(`The parameters_json of function ${decl.name}`, decl.parametersJson, MAX_PARAMETERS_CHARS);
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) throw fail.invalid(`The parameters of function ${decl.name} must be a JSON schema object.`);
  return schema as JsonSchema;
}

/** Positional arguments take the schema's properties in order; keywords must name one. */
function bindArguments(spec: FunctionSpec, call: ParsedCall): Record<string, unknown> {
  const names = Object.keys(spec.schema?.properties ?? {});
  if (call.args.length > names.length) throw new Error(`${spec.name} takes ${names.length} arguments, got ${call.args.length}`);
  const bound: Record<string, unknown> = {};
  call.args.forEach((value, i) => (bound[names[i]!] = value));
  for (const [key, value] of Object.entries(call.kwargs)) {
    if (!names.includes(key)) throw new Error(`unknown argument "${key}"`);
    if (key in bound) throw new Error(`argument "${key}" is given twice`);
    bound[key] = value;
  }
  for (const key of spec.schema?.required ?? []) if (!(key in bound)) throw new Error(`missing argument "${key}"`);
  for (const [key, value] of Object.entries(bound)) {
    const type = spec.schema?.properties?.[key]?.type;
    const actual = value === null ? "null" : Number.isInteger(value) && type === "integer" ? "integer" : typeof value;
    if (type && type !== actual) throw new Error(`argument "${key}" must be ${type}, got ${actual}`);
  }
  return bound;
}
