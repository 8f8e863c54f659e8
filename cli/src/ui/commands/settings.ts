import { describeRange, inRange, SETTING_RANGES, type GenerationParams, type SettingRange } from "@nanollm/shared";
import { CommandError, type SlashCommand } from "./types.js";

interface Setting {
  field: keyof GenerationParams;
  parse(value: string): number | boolean;
  range: string;
}

function number(range: SettingRange) {
  return (value: string): number => {
    const n = Number(value);
    if (value === "" || !inRange(range, n)) throw new Error();
    return n;
  };
}

function boolean(value: string): boolean {
  if (/^(true|on|yes|1)$/i.test(value)) return true;
  if (/^(false|off|no|0)$/i.test(value)) return false;
  throw new Error();
}

/** The per-turn settings /set knows, by the names the reference uses; ranges from the shared table. */
export const SETTINGS: Readonly<Record<string, Setting>> = {
  ...Object.fromEntries(
    (Object.entries(SETTING_RANGES) as [string, SettingRange][]).map(([name, range]) => [name, { field: range.field, parse: number(range), range: describeRange(range) }]),
  ),
  do_sample: { field: "doSample", parse: boolean, range: "true or false" },
};

/** Settings that only change a sampled reply. */
const SAMPLING_FIELDS = new Set<keyof GenerationParams>(["temperature", "topP", "topK"]);

/** "temperature=0.7 do_sample=true", or "session defaults" when nothing is set. */
export function describeParams(params: GenerationParams): string {
  const set = Object.entries(SETTINGS)
    .filter(([, s]) => params[s.field] !== undefined)
    .map(([name, s]) => `${name}=${String(params[s.field])}`);
  return set.length ? set.join(" ") : "none (the session's defaults apply)";
}

export const set: SlashCommand = {
  name: "set",
  usage: "[NAME VALUE|default]",
  help: `change a generation setting for the following turns (${Object.keys(SETTINGS).join(", ")}; default: back to the session's)`,
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
    // A sampling setting means sampling (greedy decoding would ignore it), as --temperature does.
    const implied = SAMPLING_FIELDS.has(setting.field) && value !== "default" && params.doSample === undefined && ctx.state().session.defaults?.doSample !== true;
    if (implied) params.doSample = true;
    ctx.dispatch({ type: "params", params });
    ctx.info(`settings: ${describeParams(params)}${implied ? ` (do_sample on: ${name} only matters when sampling)` : ""}`);
  },
};
