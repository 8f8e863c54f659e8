import { InvalidArgumentError } from "commander";
import { describeRange, inRange, SETTING_RANGES, type GenerationParams, type SettingName, type SettingRange } from "@nanollm/shared";

/** commander parser for a whole number in [min, max]. */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}, got "${value}".`);
    return n;
  };
}

/** commander parser for a finite number in [min, max]. */
export function numArg(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}, got "${value}".`);
    return n;
  };
}

/** commander parser for one of a fixed set of words. */
export function choiceArg<T extends string>(choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${choices.join(", ")}, got "${value}".`);
    return value as T;
  };
}

/** commander parser for a generation setting, with its range from the one shared table. */
export function settingArg(name: SettingName) {
  const range: SettingRange = SETTING_RANGES[name];
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !inRange(range, n)) throw new InvalidArgumentError(`expected ${describeRange(range)}, got "${value}".`);
    return n;
  };
}

export interface SamplingFlags {
  maxNewTokens?: number;
  minNewTokens?: number;
  doSample?: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  seed?: number;
  grammar?: string;
}

/** The sampling flags as wire params (unset flags stay unset so the daemon's defaults apply; a sampling setting implies do_sample). */
export function paramsFromFlags(f: SamplingFlags): GenerationParams {
  return {
    maxNewTokens: f.maxNewTokens,
    minNewTokens: f.minNewTokens,
    // A sampling setting means sampling, as other tools take it (greedy decoding would ignore it).
    doSample: f.doSample ?? (f.temperature !== undefined || f.topP !== undefined || f.topK !== undefined ? true : undefined),
    temperature: f.temperature,
    topP: f.topP,
    topK: f.topK,
    repetitionPenalty: f.repetitionPenalty,
    seed: f.seed,
    grammar: f.grammar,
  };
}
