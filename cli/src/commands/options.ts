import fs from "node:fs";
import { InvalidArgumentError } from "commander";
import type { GenerationParams } from "@nanollm/shared";

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

/** A flag that takes TEXT or the path of a file holding the text. */
export function textOrFile(value: string): string {
  try {
    if (fs.statSync(value).isFile()) return fs.readFileSync(value, "utf8");
  } catch {
    // Not a readable file: the value is the text itself.
  }
  return value;
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

/** The sampling flags as wire params (unset flags stay unset so the daemon's defaults apply). */
export function paramsFromFlags(f: SamplingFlags): GenerationParams {
  return {
    maxNewTokens: f.maxNewTokens,
    minNewTokens: f.minNewTokens,
    doSample: f.doSample,
    temperature: f.temperature,
    topP: f.topP,
    topK: f.topK,
    repetitionPenalty: f.repetitionPenalty,
    seed: f.seed,
    grammar: f.grammar,
  };
}
