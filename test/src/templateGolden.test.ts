import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { renderToString, TemplateRegistry, type RenderMessage } from "@nanollm/daemon";

// Expected prompts written by hand from SEED-TEMPLATES.md (see test/golden/templates/README.md).
const GOLDEN = fileURLToPath(new URL("../golden/templates/", import.meta.url));

const CASES: Record<string, RenderMessage[]> = {
  "user-only": [{ role: "user", text: "Hello!" }],
  "system-user": [
    { role: "system", text: "You are terse." },
    { role: "user", text: "Hello!" },
  ],
  "multi-turn": [
    { role: "system", text: "You are terse." },
    { role: "user", text: "Hello!" },
    { role: "bot", text: "Hi there." },
    { role: "user", text: "How are you?" },
  ],
  "two-users": [
    { role: "user", text: "First part." },
    { role: "user", text: "Second part." },
  ],
};

/** An image as a session keeps it; renderToString shows it as `[image NAME]` where the template places it. */
const picture = (name: string, fill: string) => ({ sha256: fill.repeat(64), name, bytes: 100, width: 64, height: 64, pieces: [{ kind: "image" as const, nPos: 16 }] });

/** Images in two user turns, for the templates of vision models (those with an `image.txt`). */
const IMAGE_CASE: RenderMessage[] = [
  { role: "system", text: "You are terse." },
  { role: "user", text: "What is this?", images: [picture("cat.png", "a")] },
  { role: "bot", text: "A cat." },
  { role: "user", text: "And this?", images: [picture("dog.png", "b")] },
];

describe("every template renders byte for byte as the reference", () => {
  const registry = new TemplateRegistry();
  const dirs = fs.readdirSync(GOLDEN).filter((d) => fs.statSync(path.join(GOLDEN, d)).isDirectory());

  it("has golden files for every built-in template", () => {
    assert.deepEqual([...dirs].sort(), registry.names());
  });

  for (const name of dirs) {
    for (const [label, messages] of Object.entries(CASES)) {
      it(`${name}: ${label}`, () => {
        const template = registry.resolve(name);
        // Sessions only send a system message when the template has a system format.
        const msgs = template.system === undefined ? messages.filter((m) => m.role !== "system") : messages;
        const expected = fs.readFileSync(path.join(GOLDEN, name, `${label}.txt`), "utf8");
        assert.equal(renderToString(template, msgs), expected);
      });
    }
    if (fs.existsSync(path.join(GOLDEN, name, "image.txt"))) {
      it(`${name}: image (placed where the model's template puts it)`, () => {
        const template = registry.resolve(name);
        const msgs = template.system === undefined ? IMAGE_CASE.filter((m) => m.role !== "system") : IMAGE_CASE;
        assert.equal(renderToString(template, msgs), fs.readFileSync(path.join(GOLDEN, name, "image.txt"), "utf8"));
      });
    }
  }

  it("an image stands where its `at` puts it in the text; images at one place keep their order", () => {
    const template = new TemplateRegistry().resolve("llava-v1");
    const text = "Compare  with ";
    const msgs: RenderMessage[] = [{ role: "user", text, images: [{ ...picture("dog.png", "b"), at: 14 }, { ...picture("cat.png", "a"), at: 8 }, { ...picture("fish.png", "c"), at: 14 }] }];
    assert.equal(renderToString(template, msgs), "USER: Compare [image cat.png]\n with [image dog.png]\n[image fish.png]\n\nASSISTANT: ");
    // At 0 (or none) an image comes before the text, as before positions existed; at the end, after it.
    assert.equal(renderToString(template, [{ role: "user", text: "Hi", images: [picture("cat.png", "a"), { ...picture("dog.png", "b"), at: 2 }] }]), "USER: [image cat.png]\nHi[image dog.png]\n\nASSISTANT: ");
  });

  it("the templates of vision models all have an image case", () => {
    for (const name of ["llava-v0", "llava-v1", "llava-llama-2", "bunny", "gemma-3", "qwen", "chat-ml", "smolvlm"]) assert.ok(fs.existsSync(path.join(GOLDEN, name, "image.txt")), name);
  });
});
