import type { ModelFacts } from "../engine/types.js";
import type { ChatTemplate } from "./ChatTemplate.js";
import { templateFromJinja } from "./fromJinja.js";
import { selectTemplate } from "./select.js";
import type { TemplateRegistry } from "./TemplateRegistry.js";

const derived = new Map<string, ChatTemplate | undefined>();

function convert(jinja: string): ChatTemplate | undefined {
  if (!derived.has(jinja)) derived.set(jinja, templateFromJinja(jinja, "jinja"));
  return derived.get(jinja);
}

/** The template a new session on this model gets, and why (see selectTemplate). */
export function chooseTemplate(facts: ModelFacts, registry: TemplateRegistry): { template: ChatTemplate; reason: string } {
  const choice = selectTemplate(facts, (jinja) => convert(jinja) !== undefined);
  const fromJinja = choice.name === "jinja" ? convert(facts.chatTemplateJinja ?? "") : undefined;
  return { template: fromJinja ?? registry.resolve(choice.name), reason: choice.reason };
}
