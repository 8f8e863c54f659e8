import type { LlamaModel } from "node-llama-cpp";
import { nativeOne } from "./types.js";

/**
 * A logit bias that forbids every end-of-generation token, for min_new_tokens, in the form the
 * native sampler takes (TokenBias.set() silently skips EOS/EOT: "never" on them had no effect,
 * measured). The sampler applies it before greedy or random sampling, so the reply continues
 * with the most likely other token.
 */
export function eogBias(model: LlamaModel, vocabSize: number): { keys: Uint32Array; values: Float32Array } {
  const ids: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (model.isEogToken(nativeOne(id))) ids.push(id);
  return { keys: Uint32Array.from(ids), values: new Float32Array(ids.length).fill(-Infinity) };
}
