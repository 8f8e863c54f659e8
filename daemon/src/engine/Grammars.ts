import { LlamaGrammarEvaluationState, type Llama, type LlamaGrammar, type LlamaModel } from "node-llama-cpp";
import { fail } from "@nanollm/shared";

/** Compiles GBNF grammars once per text and hands out fresh evaluation states for turns. */
export class Grammars {
  private readonly compiled = new Map<string, Promise<LlamaGrammar>>();

  constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
  ) {}

  /**
   * A grammar for the JSON of a tool call, `{"name": ..., "arguments": {...}}` with each function's
   * arguments schema, followed by `closing` (the template's end-of-call text, if it is text).
   * Returns a factory of fresh states, or undefined when a schema cannot be turned into a grammar.
   */
  async toolCall(schema: object, closing: string): Promise<(() => LlamaGrammarEvaluationState) | undefined> {
    try {
      const json = await this.llama.createGrammarForJsonSchema(schema as Parameters<Llama["createGrammarForJsonSchema"]>[0]);
      const gbnf = `${json.grammar.replace(/^root ::=/m, "toolcall ::=")}\nroot ::= toolcall${closing ? ` ${JSON.stringify(closing)}` : ""}\n`;
      const grammar = await this.llama.createGrammar({ grammar: gbnf });
      return () => new LlamaGrammarEvaluationState({ model: this.model, grammar });
    } catch {
      return undefined;
    }
  }

  async state(gbnf: string): Promise<LlamaGrammarEvaluationState> {
    let grammar = this.compiled.get(gbnf);
    if (!grammar) {
      grammar = this.llama.createGrammar({ grammar: gbnf });
      this.compiled.set(gbnf, grammar);
      grammar.catch(() => this.compiled.delete(gbnf));
    }
    try {
      return new LlamaGrammarEvaluationState({ model: this.model, grammar: await grammar });
    } catch (err) {
      throw fail.invalid(`The grammar is not valid GBNF (${(err as Error).message.split("\n")[0]}); fix it and retry.`);
    }
  }
}
