import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fail } from "@nanollm/shared";
import { validateTemplate, type ChatTemplate } from "./ChatTemplate.js";

/** The repository's templates/ folder, found from this file's place in daemon/dist. */
export const BUILTIN_TEMPLATE_DIR = fileURLToPath(new URL("../../../templates/", import.meta.url));

/**
 * Built-in templates by name, plus user templates a client sends as JSON text. The daemon never
 * reads a file a client names: the path would be read on the daemon's machine, not the client's.
 */
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

  /** The built-in templates, in name order. */
  all(): ChatTemplate[] {
    return this.names().map((n) => this.byName.get(n)!);
  }

  /** A built-in by name. */
  resolve(name: string): ChatTemplate {
    const builtin = this.byName.get(name);
    if (builtin) return builtin;
    if (name.endsWith(".json") || name.includes("/")) {
      throw fail.invalid(`The daemon does not read template files ("${name}"); send the file's JSON text instead (\`nanollm chat --chat-template FILE.json\` does).`);
    }
    throw fail.notFound(`There is no chat template "${name}"; use one of ${this.names().join(", ")} or a .json file of your own.`);
  }

  /** A template from JSON text a client sent; errors name it by its "name" field when it has one. */
  parse(text: string): ChatTemplate {
    let name: unknown;
    try {
      name = (JSON.parse(text) as { name?: unknown }).name;
    } catch {
      // parseTemplate says what is wrong with the JSON.
    }
    return parseTemplate(text, typeof name === "string" && name ? `"${name}"` : "sent by the client");
  }
}

function readTemplateFile(file: string): ChatTemplate {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw fail.notFound(`Template file ${file} cannot be read; check the path.`);
  }
  return parseTemplate(text, file);
}

/** A template from its JSON text; errors name `source` (a file, or where the text came from). */
export function parseTemplate(text: string, source: string): ChatTemplate {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw fail.invalid(`Template ${source} is not valid JSON (${(err as Error).message}).`);
  }
  return validateTemplate(json, source);
}
