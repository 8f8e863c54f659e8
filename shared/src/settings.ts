import type { GenerationParams } from "./gen/nanollm/v1/common.js";

/** The allowed values of one numeric generation setting. */
export interface SettingRange {
  /** The field of GenerationParams it sets. */
  field: Exclude<keyof GenerationParams, "doSample" | "grammar">;
  min: number;
  max: number;
  /** The minimum itself is not allowed (top_p 0 and repetition_penalty 0 mean nothing). */
  aboveMin?: boolean;
  whole: boolean;
}

/**
 * Every numeric generation setting by the name users type (`/set top_p`, `--top-p`): the one place
 * its range is written. The CLI checks flags and /set with it, the daemon every request.
 */
export const SETTING_RANGES = {
  max_new_tokens: { field: "maxNewTokens", min: 1, max: 32768, whole: true },
  min_new_tokens: { field: "minNewTokens", min: 0, max: 32768, whole: true },
  temperature: { field: "temperature", min: 0, max: 5, whole: false },
  top_p: { field: "topP", min: 0, max: 1, aboveMin: true, whole: false },
  top_k: { field: "topK", min: 0, max: 100000, whole: true },
  repetition_penalty: { field: "repetitionPenalty", min: 0, max: 10, aboveMin: true, whole: false },
  seed: { field: "seed", min: 0, max: 2 ** 32 - 1, whole: true },
} as const satisfies Record<string, SettingRange>;

export type SettingName = keyof typeof SETTING_RANGES;

/** "a whole number from 1 to 32768", "a number above 0 and at most 1". */
export function describeRange(r: SettingRange): string {
  const kind = r.whole ? "a whole number" : "a number";
  return r.aboveMin ? `${kind} above ${r.min} and at most ${r.max}` : `${kind} from ${r.min} to ${r.max}`;
}

/** Whether `n` is an allowed value of the setting. */
export function inRange(r: SettingRange, n: number): boolean {
  return Number.isFinite(n) && (r.aboveMin ? n > r.min : n >= r.min) && n <= r.max && (!r.whole || Number.isInteger(n));
}
