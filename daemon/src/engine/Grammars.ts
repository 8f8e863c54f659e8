import { fail } from "@nanollm/shared";
import type { NativeGrammar, NativeModel } from "./native.js";
import { checkGbnf } from "../grammar/checkGbnf.js";
import { jsonSchemaToGbnf } from "../grammar/jsonSchemaToGbnf.js";
import { MAX_SCHEMA_GRAMMAR_CHARS } from "../sessions/limits.js";

/** Compiled grammars kept for reuse; the least recently used go first. */
const CACHE_SIZE = 64;

/** Compiles GBNF grammars once per text (after a pre-check, so llama.cpp's parser never sees a hostile one). */
export class Grammars {
  private readonly compiled = new Map<string, NativeGrammar>();

  constructor(private readonly model: NativeModel) {}

  /**
   * A grammar for the JSON of a tool call, `{"name": ..., "arguments": {...}}` with each function's
   * arguments schema, followed by `closing` (the template's end-of-call text, if it is text).
   * Undefined when a schema cannot be turned into a grammar.
   */
  toolCall(schema: object, closing: string): NativeGrammar | undefined {
    try {
      const json = jsonSchemaToGbnf(schema, { rootName: "toolcall" });
      // Made here from checked schemas: only the converter's own size bound applies.
      return this.compile(`${json}\nroot ::= toolcall${closing ? ` ${JSON.stringify(closing)}` : ""}\n`, MAX_SCHEMA_GRAMMAR_CHARS + 1000);
    } catch {
      return undefined;
    }
  }

  /** Compiles `gbnf` (a request's, so checked against the request limits unless `maxChars` says otherwise). */
  compile(gbnf: string, maxChars?: number): NativeGrammar {
    const hit = this.compiled.get(gbnf);
    if (hit) {
      this.compiled.delete(gbnf);
      this.compiled.set(gbnf, hit);
      return hit;
    }
    checkGbnf(gbnf, maxChars ? { maxChars } : undefined);
    let grammar: NativeGrammar;
    try {
      grammar = this.model.grammar(gbnf);
    } catch (err) {
      throw fail.invalid(`The grammar is not valid GBNF (${(err as Error).message.split("\n")[0]}); fix it and retry.`);
    }
    this.compiled.set(gbnf, grammar);
    if (this.compiled.size > CACHE_SIZE) this.compiled.delete(this.compiled.keys().next().value!);
    return grammar;
  }
}
