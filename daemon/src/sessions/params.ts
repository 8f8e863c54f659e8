import { describeRange, fail, inRange, SETTING_RANGES, type GenerationParams, type SettingName, type SettingRange } from "@nanollm/shared";
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
export const MAX_NEW_TOKENS_LIMIT = SETTING_RANGES.max_new_tokens.max;

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
  if (s.grammar !== undefined && typeof s.grammar !== "string") throw bad("grammar", "text (GBNF)");
  for (const [name, range] of Object.entries(SETTING_RANGES) as [SettingName, SettingRange][]) {
    if (typeof s[range.field] !== "number" || !inRange(range, s[range.field])) throw bad(name, describeRange(range) + (name === "repetition_penalty" ? " (1 means off)" : ""));
  }
  if (s.minNewTokens > s.maxNewTokens) throw bad("min_new_tokens", "at most max_new_tokens");
  if (s.grammar !== undefined && s.grammar.length > 100_000) throw bad("grammar", "at most 100000 characters");
}
