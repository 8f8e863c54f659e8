import type { GenerationParams } from "@nanollm/shared";
import { CommandError, type SlashCommand } from "./types.js";

interface Setting {
  field: keyof GenerationParams;
  parse(value: string): number | boolean;
  range: string;
}

function number(min: number, max: number, whole: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (value === "" || !Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n))) throw new Error();
    return n;
  };
}

function boolean(value: string): boolean {
  if (/^(true|on|yes|1)$/i.test(value)) return true;
  if (/^(false|off|no|0)$/i.test(value)) return false;
  throw new Error();
}

/** The per-turn settings /set knows, by the names the reference uses. */
export const SETTINGS: Readonly<Record<string, Setting>> = {
  temperature: { field: "temperature", parse: number(0, 5, false), range: "a number from 0 to 5" },
  top_p: { field: "topP", parse: number(0, 1, false), range: "a number from 0 to 1" },
  top_k: { field: "topK", parse: number(0, 100000, true), range: "a whole number from 0 to 100000" },
  max_new_tokens: { field: "maxNewTokens", parse: number(1, 32768, true), range: "a whole number from 1 to 32768" },
  min_new_tokens: { field: "minNewTokens", parse: number(0, 32768, true), range: "a whole number from 0 to 32768" },
  repetition_penalty: { field: "repetitionPenalty", parse: number(0, 10, false), range: "a number from 0 to 10" },
  seed: { field: "seed", parse: number(0, 2 ** 32 - 1, true), range: "a whole number from 0 to 4294967295" },
  do_sample: { field: "doSample", parse: boolean, range: "true or false" },
};

/** "temperature=0.7 do_sample=true", or "session defaults" when nothing is set. */
export function describeParams(params: GenerationParams): string {
  const set = Object.entries(SETTINGS)
    .filter(([, s]) => params[s.field] !== undefined)
    .map(([name, s]) => `${name}=${String(params[s.field])}`);
  return set.length ? set.join(" ") : "none (the session's defaults apply)";
}

export const set: SlashCommand = {
  name: "set",
  usage: `${Object.keys(SETTINGS).join("|")} VALUE|default`,
  help: "change a generation setting for the following turns (default: back to the session's)",
  complete: (args) => (args.includes(" ") ? ["default", ...(args.startsWith("do_sample ") ? ["true", "false"] : [])] : Object.keys(SETTINGS)),
  run(args, ctx) {
    const [name = "", value, ...extra] = args.split(/\s+/).filter(Boolean);
    if (name === "") return ctx.info(`settings: ${describeParams(ctx.state().params)}`);
    const setting = SETTINGS[name.toLowerCase()];
    if (!setting) throw new CommandError(`There is no setting "${name}"; use one of ${Object.keys(SETTINGS).join(", ")}.`);
    const params = { ...ctx.state().params };
    if (value === undefined) return ctx.info(`${name} = ${params[setting.field] ?? "the session's default"}`);
    if (extra.length > 0) throw new CommandError(`/set takes one value; write /set ${name} VALUE.`);
    if (value === "default") delete params[setting.field];
    else {
      try {
        (params as Record<string, number | boolean>)[setting.field] = setting.parse(value);
      } catch {
        throw new CommandError(`${name} must be ${setting.range}, not "${value}".`);
      }
    }
    ctx.dispatch({ type: "params", params });
    ctx.info(`settings: ${describeParams(params)}`);
  },
};
