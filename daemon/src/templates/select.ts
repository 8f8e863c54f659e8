import type { ModelFacts } from "../engine/types.js";

export interface TemplateChoice {
  name: string;
  reason: string;
}

/** Picks a template for a model from its GGUF metadata (the template issue widens the rules). */
export function selectTemplate(facts: Pick<ModelFacts, "chatTemplateJinja" | "ggufName" | "name">): TemplateChoice {
  const jinja = facts.chatTemplateJinja ?? "";
  if (jinja.includes("<|im_start|>")) return { name: "chat-ml", reason: "gguf chat template uses <|im_start|>" };
  if (!jinja) return { name: "raw", reason: "model has no chat template in its GGUF metadata" };
  return { name: "raw", reason: "gguf chat template not recognised" };
}
