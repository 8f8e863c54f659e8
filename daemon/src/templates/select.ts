import type { ModelFacts } from "../engine/types.js";

export interface TemplateChoice {
  /** A built-in template name, or "jinja" for the model's own template converted to our format. */
  name: string;
  reason: string;
}

type Evidence = Pick<ModelFacts, "chatTemplateJinja" | "ggufName" | "name" | "architecture">;

/** Families recognised from the Jinja chat template stored in the GGUF (first match wins). */
const JINJA_RULES: [RegExp[], string][] = [
  // SmolVLM (idefics3) opens with <|im_start|> but is no chat-ml: "User: ...<end_of_utterance>".
  [[/<end_of_utterance>/], "smolvlm"],
  [[/<\|im_start\|>/, /You are Qwen/], "qwen"],
  [[/<\|im_start\|>/, /<tool_call>/], "chat-ml-tools"],
  [[/<\|im_start\|>/], "chat-ml"],
  [[/<\|start_header_id\|>/, /<\|python_tag\|>|ipython/], "llama-3.1"],
  [[/<\|start_header_id\|>/], "llama-3"],
  [[/<start_of_turn>/], "gemma"],
  [[/<\|user\|>/, /<\|end\|>/], "phi-3"],
  [[/<\|user\|>/, /<\|endoftext\|>/], "stablelm-zephyr"],
  [[/<\|user\|>/], "tiny-llama"],
  [[/\[INST\]/, /<<SYS>>/], "llama-2"],
  [[/\[INST\]/], "mistral-instruct"],
  [[/### Human:/], "vicuna-v0"],
  [[/USER:/, /ASSISTANT:/], "vicuna-v1"],
];

/**
 * Model-name rules: the reference's list (lower-cased name, first match wins) with its faults
 * fixed: Llama-3.1+ and Hermes get tool-calling templates, Phi-3 gets phi-3, chat-ml is reachable.
 */
const NAME_RULES: [(n: string) => boolean, string][] = [
  [(n) => n.includes("smolvlm"), "smolvlm"],
  [(n) => n.includes("stablelm") && n.includes("zephyr"), "stablelm-zephyr"],
  [(n) => n.includes("obsidian-3b"), "nous-obsidian"],
  [(n) => /phi-?[34]/.test(n), "phi-3"],
  [(n) => n.includes("phi"), "phi-2-instruct"],
  [(n) => /gemma-?3/.test(n), "gemma-3"],
  [(n) => /gemma-?2/.test(n), "gemma-2"],
  [(n) => n.includes("gemma"), "gemma"],
  [(n) => n.includes("tinyllama"), "tiny-llama"],
  [(n) => n.includes("sheared-llama"), "sheared-llama"],
  [(n) => /open[_-]llama/.test(n), "open-llama"],
  [(n) => n.includes("vila"), "vicuna-v1"],
  [(n) => n.includes("hermes"), "chat-ml-tools"],
  [(n) => n.includes("qwen"), "qwen"],
  [(n) => /llama-?3\.[1-9]/.test(n), "llama-3.1"],
  [(n) => /llama-?2/.test(n) && n.includes("llava"), "llava-llama-2"],
  [(n) => /llama-?2/.test(n), "llama-2"],
  [(n) => /llama-?3/.test(n), "llama-3"],
  [(n) => n.includes("vicuna") && n.includes("v0"), "vicuna-v0"],
  [(n) => n.includes("vicuna"), "vicuna-v1"],
  [(n) => n.includes("llava") && n.includes("v0"), "llava-v0"],
  [(n) => n.includes("llava"), "llava-v1"],
  [(n) => n.includes("openvla"), "openvla"],
  [(n) => /mi[sx]tral/.test(n), "mistral-instruct"],
  [(n) => /chat-?ml|openhermes|dolphin/.test(n), "chat-ml"],
];

const ARCH_RULES: Record<string, string> = { gemma: "gemma", gemma2: "gemma-2", gemma3: "gemma-3", phi3: "phi-3", qwen2: "qwen", qwen3: "qwen" };

/**
 * Picks a template: the GGUF's Jinja template when it is a known family (gemma refined by the
 * architecture), then the model name rules on general.name and the file name, then the
 * architecture, then the model's own Jinja converted to our format, and raw as the last resort.
 */
export function selectTemplate(facts: Evidence, canConvertJinja: (jinja: string) => boolean = () => false): TemplateChoice {
  const jinja = facts.chatTemplateJinja ?? "";
  const byJinja = JINJA_RULES.find(([patterns]) => patterns.every((p) => p.test(jinja)))?.[1];
  if (jinja && byJinja) {
    const refined = byJinja === "gemma" ? (ARCH_RULES[facts.architecture] ?? byJinja) : byJinja;
    return { name: refined, reason: `the GGUF chat template is ${refined}-style` };
  }
  for (const [label, value] of [
    ["general.name", facts.ggufName],
    ["file name", facts.name],
  ] as const) {
    const byName = NAME_RULES.find(([test]) => test(value.toLowerCase()))?.[1];
    if (value && byName) return { name: byName, reason: `model ${label} "${value}"` };
  }
  const byArch = ARCH_RULES[facts.architecture];
  if (byArch) return { name: byArch, reason: `model architecture ${facts.architecture}` };
  if (jinja && canConvertJinja(jinja)) return { name: "jinja", reason: "the model's own GGUF chat template" };
  return { name: "raw", reason: jinja ? "the GGUF chat template is not recognised or convertible" : "the model has no chat template and an unknown name" };
}
