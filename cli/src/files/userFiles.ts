import fs from "node:fs";
import path from "node:path";
import { NanoError } from "@nanollm/shared";

/**
 * Files a user names are read here, on the client's machine, and their content is sent: the
 * daemon may run elsewhere and never reads a path a client gives it.
 */
function readUserFile(file: string, what: string, hint: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : ((err as Error).message.split("\n")[0] ?? "");
    throw new NanoError("INVALID_ARGUMENT", `Cannot read ${what} file ${file} (${why}); ${hint}`);
  }
}

/**
 * A flag value that is text, or `@FILE` for the text of a file (`@@` sends a leading "@" as text).
 * Text and file are told apart by the "@" alone: a value is never a path because a file of that
 * name happens to exist.
 */
export function textOrAtFile(value: string, what: string): string {
  if (value.startsWith("@@")) return value.slice(1);
  if (!value.startsWith("@")) return value;
  return readUserFile(value.slice(1), what, `check the path (or write @@ to send text that starts with "@").`);
}

/** Whether a --chat-template or /template value names a JSON file rather than a built-in. */
export function isTemplateFile(value: string): boolean {
  return value.endsWith(".json") || value.includes("/") || value.includes(path.sep);
}

/** A template argument as the request fields: a built-in's name, or a file's JSON text read here. */
export function templateFields(value: string): { chatTemplate: string } | { chatTemplateJson: string } {
  if (!isTemplateFile(value)) return { chatTemplate: value };
  const text = readUserFile(value, "template", "check the path, or name a built-in template (`nanollm templates`).");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new NanoError("INVALID_ARGUMENT", `Template file ${value} is not valid JSON (${(err as Error).message}); fix the file.`);
  }
  // A template without a name is called after its file (the daemon names it in errors and lists).
  if (typeof json === "object" && json !== null && !Array.isArray(json) && !("name" in json)) json = { name: path.basename(value), ...json };
  return { chatTemplateJson: JSON.stringify(json) };
}
