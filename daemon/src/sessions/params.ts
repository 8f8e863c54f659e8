import { fail, type GenerationParams } from "@nanollm/shared";
import type { Sampling } from "../engine/types.js";
import { checkGbnf } from "../grammar/checkGbnf.js";

/** Daemon-wide defaults: greedy decoding like NanoLLM's do_sample=False. */
export const DEFAULT_SAMPLING: Sampling = {
  maxNewTokens: 256,
  minNewTokens: 0,
  doSample: false,
  temperature: 0.7,
  topP: 0.95,
  topK: 40,
  repetitionPenalty: 1,
  seed: 0,
};

/** Ceiling on max_new_tokens a request may ask for. */
export const MAX_NEW_TOKENS_LIMIT = 32768;

/** Layers turn overrides over session defaults over daemon defaults, and checks the ranges. */
export function resolveSampling(...layers: (GenerationParams | undefined)[]): Sampling {
  const merged: Sampling = { ...DEFAULT_SAMPLING, seed: Math.floor(Math.random() * 2 ** 31) };
  let seedGiven = false;
  for (const p of layers) {
    if (!p) continue;
    if (p.maxNewTokens !== undefined) merged.maxNewTokens = p.maxNewTokens;
    if (p.minNewTokens !== undefined) merged.minNewTokens = p.minNewTokens;
    if (p.doSample !== undefined) merged.doSample = p.doSample;
    if (p.temperature !== undefined) merged.temperature = p.temperature;
    if (p.topP !== undefined) merged.topP = p.topP;
    if (p.topK !== undefined) merged.topK = p.topK;
    if (p.repetitionPenalty !== undefined) merged.repetitionPenalty = p.repetitionPenalty;
    if (p.grammar !== undefined) merged.grammar = p.grammar || undefined;
    if (p.seed !== undefined) {
      merged.seed = p.seed;
      seedGiven = true;
    }
  }
  check(merged, seedGiven);
  return merged;
}

/**
 * Validates generation params on their own: session defaults when set (CreateSession,
 * UpdateSession) and when restored from the journal. A default grammar is checked here too, so a
 * bad one is refused when stored rather than on every later turn.
 */
export function checkParams(p: GenerationParams | undefined): void {
  const s = resolveSampling(p);
  if (s.grammar !== undefined) checkGbnf(s.grammar);
}

function check(s: Sampling, _seedGiven: boolean): void {
  const bad = (field: string, rule: string) => fail.invalid(`${field} must be ${rule}; fix the value and retry.`);
  // Wire values are typed by protobuf; these guard settings read back from a journal file.
  if (typeof s.doSample !== "boolean") throw bad("do_sample", "true or false");
  if (!Number.isInteger(s.seed)) throw bad("seed", "an integer");
  if (s.grammar !== undefined && typeof s.grammar !== "string") throw bad("grammar", "text (GBNF)");
  if (!(Number.isInteger(s.maxNewTokens) && s.maxNewTokens >= 1 && s.maxNewTokens <= MAX_NEW_TOKENS_LIMIT)) throw bad("max_new_tokens", `between 1 and ${MAX_NEW_TOKENS_LIMIT}`);
  if (!(Number.isInteger(s.minNewTokens) && s.minNewTokens >= 0 && s.minNewTokens <= s.maxNewTokens)) throw bad("min_new_tokens", "between 0 and max_new_tokens");
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0 && s.temperature <= 5)) throw bad("temperature", "between 0 and 5");
  if (!(Number.isFinite(s.topP) && s.topP > 0 && s.topP <= 1)) throw bad("top_p", "above 0 and at most 1");
  if (!(Number.isInteger(s.topK) && s.topK >= 0 && s.topK <= 100000)) throw bad("top_k", "between 0 and 100000");
  if (s.grammar !== undefined && s.grammar.length > 100_000) throw bad("grammar", "at most 100000 characters");
  if (!(Number.isFinite(s.repetitionPenalty) && s.repetitionPenalty > 0 && s.repetitionPenalty <= 10)) {
    throw bad("repetition_penalty", "above 0 and at most 10 (1 means off)");
  }
}
