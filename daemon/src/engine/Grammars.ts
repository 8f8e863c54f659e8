import { LlamaGrammarEvaluationState, type Llama, type LlamaGrammar, type LlamaModel } from "node-llama-cpp";
import { fail } from "@nanollm/shared";

/** Compiles GBNF grammars once per text and hands out fresh evaluation states for turns. */
export class Grammars {
  private readonly compiled = new Map<string, Promise<LlamaGrammar>>();

  constructor(
    private readonly llama: Llama,
    private readonly model: LlamaModel,
  ) {}

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
