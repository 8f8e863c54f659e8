import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderToString, TemplateRegistry } from "@nanollm/daemon";
import { templateFromJinja } from "@nanollm/daemon/dist/templates/fromJinja.js";
import { selectTemplate } from "@nanollm/daemon/dist/templates/select.js";
import { Template } from "@huggingface/jinja";

const CHATML_JINJA = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
const QWEN_JINJA = "{% if messages[0].role != 'system' %}<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}" + CHATML_JINJA;
const HERMES_JINJA = CHATML_JINJA + "{# tools: <tool_call> {{ tools }} </tool_call> #}";
const LLAMA3_JINJA = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
const LLAMA31_JINJA = LLAMA3_JINJA + "{# Environment: ipython <|python_tag|> #}";
const GEMMA_JINJA = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}";
const PHI3_JINJA = "{% for m in messages %}{% if m.role == 'user' %}{{ '<|user|>\n' + m.content + '<|end|>\n' }}{% else %}{{ '<|assistant|>\n' + m.content + '<|end|>\n' }}{% endif %}{% endfor %}<|assistant|>\n";
const ZEPHYR_JINJA = "{% for m in messages %}{% if m.role == 'user' %}{{ '<|user|>\n' + m.content + eos_token }}{% elif m.role == 'system' %}{{ '<|system|>\n' + m.content + eos_token }}{% else %}{{ '<|assistant|>\n' + m.content + eos_token }}{% endif %}{% endfor %}";
const MISTRAL_JINJA = "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}";
const LLAMA2_JINJA = "{% for m in messages %}{% if m.role == 'system' %}<<SYS>>\n{{ m.content }}\n<</SYS>>\n\n{% else %}[INST] {{ m.content }} [/INST]{% endif %}{% endfor %}";
// SmolVLM's own template (typed content parts; <|im_start|> once, then "User: ...<end_of_utterance>").
const SMOLVLM_JINJA =
  "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
// A family nanollm has no built-in for: it must be converted, not rejected.
const ODD_JINJA = "{% for m in messages %}{% if m.role == 'system' %}== {{ m.content }} ==\n{% elif m.role == 'user' %}>> {{ m.content }}\n{% else %}<< {{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}<< {% endif %}";

const facts = (o: { jinja?: string; gguf?: string; file?: string; arch?: string }) => ({
  chatTemplateJinja: o.jinja,
  ggufName: o.gguf ?? "",
  name: o.file ?? "model",
  architecture: o.arch ?? "llama",
});

const CASES: [string, ReturnType<typeof facts>, string][] = [
  ["chat-ml Jinja", facts({ jinja: CHATML_JINJA }), "chat-ml"],
  ["Qwen Jinja", facts({ jinja: QWEN_JINJA, arch: "qwen2" }), "qwen"],
  ["Hermes Jinja with tool calls", facts({ jinja: HERMES_JINJA, gguf: "Hermes-3-Llama-3.1-8B" }), "chat-ml-tools"],
  ["Llama 3 Jinja", facts({ jinja: LLAMA3_JINJA }), "llama-3"],
  ["Llama 3.1 Jinja with ipython tools", facts({ jinja: LLAMA31_JINJA }), "llama-3.1"],
  ["Gemma Jinja, gemma arch", facts({ jinja: GEMMA_JINJA, arch: "gemma" }), "gemma"],
  ["Gemma Jinja, gemma2 arch", facts({ jinja: GEMMA_JINJA, arch: "gemma2" }), "gemma-2"],
  ["Gemma Jinja, gemma3 arch", facts({ jinja: GEMMA_JINJA, arch: "gemma3" }), "gemma-3"],
  ["Phi-3 Jinja", facts({ jinja: PHI3_JINJA, arch: "phi3" }), "phi-3"],
  ["Zephyr-style Jinja", facts({ jinja: ZEPHYR_JINJA }), "tiny-llama"],
  ["Mistral Jinja", facts({ jinja: MISTRAL_JINJA }), "mistral-instruct"],
  ["Llama 2 Jinja", facts({ jinja: LLAMA2_JINJA }), "llama-2"],
  ["SmolVLM Jinja is not chat-ml", facts({ jinja: SMOLVLM_JINJA, gguf: "SmolVLM 256M Instruct" }), "smolvlm"],
  ["name: SmolVLM", facts({ file: "SmolVLM-500M-Instruct-Q8_0" }), "smolvlm"],
  ["name: StableLM Zephyr", facts({ gguf: "stablelm-2-zephyr-1_6b" }), "stablelm-zephyr"],
  ["name: Obsidian", facts({ file: "nous-obsidian-3b-q4" }), "nous-obsidian"],
  ["name: Phi-3 is not phi-2", facts({ gguf: "Phi-3-mini-4k-instruct" }), "phi-3"],
  ["name: Phi-2", facts({ gguf: "phi-2" }), "phi-2-instruct"],
  ["name: TinyLlama", facts({ gguf: "TinyLlama-1.1B-Chat-v1.0" }), "tiny-llama"],
  ["name: Sheared LLaMA", facts({ file: "Sheared-LLaMA-2.7B-ShareGPT" }), "sheared-llama"],
  ["name: OpenLLaMA", facts({ file: "open_llama_3b_v2" }), "open-llama"],
  ["name: VILA", facts({ gguf: "VILA1.5-3b" }), "vicuna-v1"],
  ["name: Llama-3.1 gets tool calls", facts({ gguf: "Meta-Llama-3.1-8B-Instruct" }), "llama-3.1"],
  ["name: Llama-3.2", facts({ file: "Llama-3.2-1B-Instruct-Q4_K_M" }), "llama-3.1"],
  ["name: Llama-3", facts({ gguf: "Meta-Llama-3-8B-Instruct" }), "llama-3"],
  ["name: Llama-2 chat", facts({ gguf: "Llama-2-7b-chat-hf" }), "llama-2"],
  ["name: LLaVA Llama-2", facts({ gguf: "llava-llama-2-13b-chat" }), "llava-llama-2"],
  ["name: Vicuna v0", facts({ file: "vicuna-7b-v0" }), "vicuna-v0"],
  ["name: Vicuna", facts({ file: "vicuna-13b-v1.5" }), "vicuna-v1"],
  ["name: LLaVA v1.5", facts({ file: "llava-v1.5-7b" }), "llava-v1"],
  ["name: OpenVLA", facts({ gguf: "openvla-7b" }), "openvla"],
  ["name: Mistral", facts({ gguf: "Mistral-7B-Instruct-v0.3" }), "mistral-instruct"],
  ["name: OpenHermes gets chat-ml with tool stops", facts({ gguf: "openhermes-2.5-mistral-7b" }), "chat-ml-tools"],
  ["name: Qwen", facts({ gguf: "Qwen2.5-0.5B-Instruct" }), "qwen"],
  ["architecture only: gemma2", facts({ arch: "gemma2" }), "gemma-2"],
  ["Jinja metadata beats the file name", facts({ jinja: CHATML_JINJA, file: "llama-2-7b" }), "chat-ml"],
  ["unknown Jinja is converted", facts({ jinja: ODD_JINJA }), "jinja"],
  ["nothing known: raw", facts({ file: "mystery-model" }), "raw"],
];

describe("template selection", () => {
  const registry = new TemplateRegistry();
  for (const [label, evidence, expected] of CASES) {
    it(`${label} → ${expected}`, () => {
      const choice = selectTemplate(evidence, (j) => templateFromJinja(j, "jinja") !== undefined);
      assert.equal(choice.name, expected, choice.reason);
      assert.ok(choice.reason.length > 0);
      if (expected !== "jinja") assert.equal(registry.resolve(expected).name, expected, "the chosen template exists");
    });
  }
});

describe("conversion of a model's own Jinja template", () => {
  const convo = [
    { role: "system" as const, text: "Be kind." },
    { role: "user" as const, text: "Hi" },
    { role: "bot" as const, text: "Hello." },
    { role: "user" as const, text: "Bye" },
  ];
  const jinjaRender = (src: string, msgs: typeof convo) =>
    new Template(src).render({ messages: msgs.map((m) => ({ role: m.role === "bot" ? "assistant" : m.role, content: m.text })), add_generation_prompt: true, bos_token: "", eos_token: "" });

  for (const [label, src] of [
    ["an unknown family", ODD_JINJA],
    ["chat-ml", CHATML_JINJA],
    ["Llama 3", LLAMA3_JINJA],
    ["Qwen (injects a default system prompt)", QWEN_JINJA],
  ] as const) {
    it(`renders ${label} exactly as the Jinja does`, () => {
      const t = templateFromJinja(src, "jinja");
      assert.ok(t, "converted");
      assert.equal(renderToString(t, convo), jinjaRender(src, convo));
    });
  }

  it("smolvlm renders a user turn as SmolVLM's own Jinja does (text parts)", () => {
    const jinja = new Template(SMOLVLM_JINJA).render({ messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }], add_generation_prompt: true });
    assert.equal(renderToString(new TemplateRegistry().resolve("smolvlm"), [{ role: "user", text: "Hi" }]), jinja);
  });

  it("finds where a vision model's Jinja puts an image (content parts), as the template's image field", () => {
    // llava-1.5 style: "USER: <image>\n..." — images first, then the text.
    const LLAVA_JINJA =
      "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} {% else %}ASSISTANT: {{ m['content'] }}</s>{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}";
    // Qwen2-VL style: the vision tokens right before the text.
    const QWENVL_JINJA =
      "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    assert.equal(templateFromJinja(LLAVA_JINJA, "jinja")?.image, "${IMAGE}\n");
    assert.equal(templateFromJinja(QWENVL_JINJA, "jinja")?.image, "${IMAGE}");
    assert.equal(templateFromJinja(CHATML_JINJA, "jinja")?.image, undefined, "a text template shows no image");
  });

  it("converts a template that reads only content parts (as many vision models' do)", () => {
    const PARTS_ONLY =
      "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    const t = templateFromJinja(PARTS_ONLY, "jinja");
    assert.ok(t, "converted");
    assert.equal(t.image, "${IMAGE}");
    const parts = convo.map((m) => ({ role: m.role === "bot" ? "assistant" : m.role, content: [{ type: "text", text: m.text }] }));
    assert.equal(renderToString(t, convo), new Template(PARTS_ONLY).render({ messages: parts, add_generation_prompt: true }));
  });

  it("finds the default system prompt a template injects", () => {
    assert.equal(templateFromJinja(QWEN_JINJA, "jinja")?.system_prompt, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  });

  it("converts a template without a system role using `first`", () => {
    const t = templateFromJinja(MISTRAL_JINJA, "jinja");
    assert.ok(t);
    const msgs = convo.slice(1);
    assert.equal(renderToString(t, msgs), jinjaRender(MISTRAL_JINJA, msgs));
  });
});
