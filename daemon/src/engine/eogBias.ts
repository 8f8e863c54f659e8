import { TokenBias, type LlamaModel } from "node-llama-cpp";
import { nativeOne } from "./types.js";

/**
 * A logit bias that forbids every end-of-generation token, for min_new_tokens. TokenBias.set()
 * silently skips EOS/EOT ("never" on them has no effect, measured), so the ids go straight into
 * its bias map (internal, pinned 3.22.1), which the native sampler applies before greedy or
 * random sampling: the reply continues with the most likely other token.
 */
export function eogBias(model: LlamaModel, vocabSize: number): TokenBias {
  const bias = new TokenBias(model.tokenizer);
  const biases = (bias as unknown as { _biases: Map<number, number> })._biases;
  for (let id = 0; id < vocabSize; id++) if (model.isEogToken(nativeOne(id))) biases.set(id, -Infinity);
  return bias;
}
