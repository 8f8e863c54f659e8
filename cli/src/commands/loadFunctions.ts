import path from "node:path";
import { pathToFileURL } from "node:url";
import { NanoError, type FunctionDecl } from "@nanollm/shared";
import type { FunctionHandler } from "../client/NanoClient.js";

/** What a --functions module exports for each function: a documented function, or an object. */
type Exported = ((args: Record<string, unknown>) => unknown) & { description?: string; parameters?: object };
type ExportedObject = { description?: string; parameters?: object; run: (args: Record<string, unknown>) => unknown };

/**
 * Loads the user's own functions from an ES module: every export whose name is upper case
 * (WEATHER) is a function the model may call, documented by its `description` and `parameters`
 * (a JSON schema of its arguments object). They run here, in the client, never in the daemon.
 */
export async function loadFunctions(file: string): Promise<{ decls: FunctionDecl[]; handler: FunctionHandler }> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path.resolve(file)).href)) as Record<string, unknown>;
  } catch (err) {
    throw new NanoError("INVALID_ARGUMENT", `Cannot load functions from ${file} (${(err as Error).message.split("\n")[0]}); pass an ES module (.mjs) exporting upper-case functions.`);
  }
  const runs = new Map<string, (args: Record<string, unknown>) => unknown>();
  const decls: FunctionDecl[] = [];
  for (const [name, value] of Object.entries(mod)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) continue;
    const fn = typeof value === "function" ? (value as Exported) : (value as ExportedObject | undefined);
    const run = typeof fn === "function" ? fn : fn?.run;
    if (typeof run !== "function") throw new NanoError("INVALID_ARGUMENT", `Export ${name} of ${file} is neither a function nor an object with run(); fix the module.`);
    runs.set(name, run);
    decls.push({ name, description: fn?.description ?? "", parametersJson: fn?.parameters ? JSON.stringify(fn.parameters) : "" });
  }
  if (decls.length === 0) throw new NanoError("INVALID_ARGUMENT", `${file} exports no upper-case functions (e.g. export function WEATHER({city}) {...}); nothing to offer the model.`);
  const handler: FunctionHandler = async (call) => {
    const run = runs.get(call.name);
    if (!run) return { result: `this client has no function ${call.name}`, isError: true };
    const out = await run(call.argumentsJson ? (JSON.parse(call.argumentsJson) as Record<string, unknown>) : {});
    return { result: typeof out === "string" ? out : JSON.stringify(out), isError: false };
  };
  return { decls, handler };
}
