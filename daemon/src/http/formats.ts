import { fail, type GenerationParams } from "@nanollm/shared";
import type { ModelHost } from "../engine/ModelHost.js";
import { jsonSchemaToGbnf } from "../grammar/jsonSchemaToGbnf.js";
import { MAX_NEW_TOKENS_LIMIT } from "../sessions/params.js";

/** GBNF for JSON output: any JSON object, or the JSON texts a schema allows. */
export function jsonGrammar(schema?: object): string {
  return jsonSchemaToGbnf(schema ?? { type: "object" });
}

/** The reply limit a request asks for; none means up to the end of the context, as both APIs do. */
export function replyLimit(host: ModelHost, field: string, asked: number | null | undefined): number {
  if (asked === undefined || asked === null || asked < 0) return Math.min(MAX_NEW_TOKENS_LIMIT, host.facts.contextSize);
  if (asked > MAX_NEW_TOKENS_LIMIT) throw fail.invalid(`${field} is ${asked}, more than the limit of ${MAX_NEW_TOKENS_LIMIT}; ask for fewer tokens.`);
  return asked;
}

/** Temperature and top-p as the APIs mean them: temperature 0 (or top-p 0) is greedy decoding. */
export function samplingOf(temperature: number, topP: number, topK: number, seed: number | null | undefined): GenerationParams {
  const greedy = temperature <= 0 || topP <= 0;
  return {
    doSample: !greedy,
    temperature: greedy ? undefined : temperature,
    topP: greedy ? undefined : topP,
    topK,
    // The APIs allow any integer; the sampler's seed is unsigned.
    seed: seed === undefined || seed === null ? undefined : Math.abs(seed) % 2 ** 32,
  };
}

/** Stop strings as a list, empty ones dropped. */
export function stopList(stop: string | string[] | null | undefined): string[] {
  return (typeof stop === "string" ? [stop] : (stop ?? [])).filter((s) => s.length > 0);
}
