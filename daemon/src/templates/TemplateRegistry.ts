import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fail } from "@nanollm/shared";
import { validateTemplate, type ChatTemplate } from "./ChatTemplate.js";

/** The repository's templates/ folder, found from this file's place in daemon/dist. */
export const BUILTIN_TEMPLATE_DIR = fileURLToPath(new URL("../../../templates/", import.meta.url));

/** Built-in templates by name, plus user templates loaded from JSON files on request. */
export class TemplateRegistry {
  private readonly byName = new Map<string, ChatTemplate>();

  constructor(dir: string = BUILTIN_TEMPLATE_DIR) {
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
      const template = readTemplateFile(path.join(dir, file));
      this.byName.set(template.name, template);
    }
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  /** A built-in by name, or a JSON file by path (anything ending in .json or holding a slash). */
  resolve(nameOrFile: string): ChatTemplate {
    const builtin = this.byName.get(nameOrFile);
    if (builtin) return builtin;
    if (nameOrFile.endsWith(".json") || nameOrFile.includes("/")) return readTemplateFile(nameOrFile);
    throw fail.notFound(`There is no chat template "${nameOrFile}"; use one of ${this.names().join(", ")} or a path to a .json file.`);
  }
}

function readTemplateFile(file: string): ChatTemplate {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw fail.notFound(`Template file ${file} cannot be read; check the path.`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw fail.invalid(`Template file ${file} is not valid JSON (${(err as Error).message}).`);
  }
  return validateTemplate(json, file);
}
