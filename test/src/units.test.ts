import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { NanoError } from "@nanollm/shared";
import { renderToString, TemplateRegistry } from "@nanollm/daemon";
import { ReplyText } from "@nanollm/daemon/dist/sessions/ReplyText.js";
import { resolveSampling } from "@nanollm/daemon/dist/sessions/params.js";
import { nativeAddon } from "@nanollm/daemon/dist/engine/native.js";
import { tempDir } from "./helpers/fixtures.js";

describe("ReplyText", () => {
  // Each "token" is one character here, so stop strings necessarily span several tokens.
  const feed = (pieces: string[], stops: string[]) => {
    const text = new ReplyText((ids) => ids.map((i) => pieces[i]).join(""), stops);
    const deltas: string[] = [];
    let stopped = false;
    for (let i = 1; i <= pieces.length && !stopped; i++) {
      const r = text.update(pieces.slice(0, i).map((_, j) => j));
      deltas.push(r.delta);
      stopped = r.stopped;
    }
    deltas.push(text.flush());
    return { shown: deltas.join(""), final: text.final, stopped, deltas };
  };

  it("holds back a possible stop string and cuts at it", () => {
    const r = feed([..."Hello ###", ..." more"], ["###"]);
    assert.equal(r.shown, "Hello ");
    assert.equal(r.final, "Hello ");
    assert.ok(r.stopped);
  });

  it("releases held-back text that turns out not to be a stop string", () => {
    const r = feed([..."a #b ## c"], ["###"]);
    assert.equal(r.shown, "a #b ## c");
    assert.ok(!r.stopped);
    assert.equal(r.deltas[2], "", "the lone # waited for the next token");
  });

  it("never emits a half UTF-8 character", () => {
    // As llama.cpp detokenizes: a multi-byte character split over two tokens shows U+FFFD until complete.
    const texts = ["caf", "caf\uFFFD", "café!"];
    const text = new ReplyText((ids) => texts[ids.length - 1]!, []);
    const deltas = [0, 1, 2].map((n) => text.update(Array.from({ length: n + 1 }, (_, i) => i)).delta);
    assert.deepEqual(deltas, ["caf", "", "é!"]);
  });
});

describe("templates", () => {
  const registry = new TemplateRegistry();

  it("renders chat-ml as the reference does (golden text written by hand)", () => {
    const chatml = registry.resolve("chat-ml");
    const got = renderToString(chatml, [
      { role: "system", text: "Be brief." },
      { role: "user", text: "Hi" },
      { role: "bot", text: "Hello!" },
      { role: "user", text: "Bye" },
    ]);
    assert.equal(
      got,
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("merges consecutive messages of one role (rule 2)", () => {
    const got = renderToString(registry.resolve("chat-ml"), [
      { role: "user", text: "one" },
      { role: "user", text: "two" },
    ]);
    assert.equal(got, "<|im_start|>user\nonetwo<|im_end|>\n<|im_start|>assistant\n");
  });

  it("rejects a bad template's JSON naming the template and the field", () => {
    assert.throws(() => registry.parse(JSON.stringify({ name: "mine.json", user: "no placeholder", bot: "${MESSAGE}" })), (e: unknown) => e instanceof NanoError && e.message.includes("mine.json") && e.message.includes('"user"'));
    assert.throws(() => registry.parse("{ not json"), /not valid JSON/);
    assert.equal(registry.parse(JSON.stringify({ name: "mine.json", user: "${MESSAGE}", bot: "${MESSAGE}" })).name, "mine.json");
  });

  it("never reads a template file a client names (defect 1)", () => {
    const dir = tempDir("tpl");
    const file = path.join(dir, "mine.json");
    fs.writeFileSync(file, JSON.stringify({ user: "${MESSAGE}", bot: "${MESSAGE}" }));
    assert.throws(() => registry.resolve(file), /does not read template files.*send the file's JSON text/);
  });
});

describe("generation settings", () => {
  it("layers turn over session over daemon defaults", () => {
    const s = resolveSampling({ maxNewTokens: 10, temperature: 0.3 }, { maxNewTokens: 5 });
    assert.equal(s.maxNewTokens, 5);
    assert.equal(s.temperature, 0.3);
    assert.equal(s.doSample, false, "greedy by default");
  });

  it("refuses out-of-range values with the field's name", () => {
    assert.throws(() => resolveSampling({ minNewTokens: 9, maxNewTokens: 4 }), /min_new_tokens must be at most max_new_tokens/);
    assert.throws(() => resolveSampling({ repetitionPenalty: 0 }), /repetition_penalty/);
    assert.throws(() => resolveSampling({ temperature: Number.NaN }), /temperature/);
  });
});

describe("batch plan (the native loop's planRound)", () => {
  // Work per sequence in arrival order: one token left when it is a reply step, many when it is a prompt.
  const plan = (items: [number, number][], size: number) => nativeAddon().planRound(items.map(([seq, left]) => ({ seq, left })), size);

  it("puts reply steps in the batch before prompt chunks", () => {
    // Sequence 1's 300-token prompt arrived first, but the three generating sequences go in whole.
    assert.deepEqual(plan([[1, 300], [4, 1], [0, 1], [2, 1]], 256), [[0, 1], [1, 253], [2, 1], [4, 1]]);
  });

  it("shares the batch among prompts: a short prompt behind a long one goes in the same round", () => {
    assert.deepEqual(plan([[1, 20000], [2, 20]], 256), [[1, 236], [2, 20]]);
    assert.deepEqual(plan([[1, 20000], [2, 20000], [0, 1]], 256), [[0, 1], [1, 128], [2, 127]]);
  });

  it("continues a prompt where the last batch left it", () => {
    assert.deepEqual(plan([[1, 47], [0, 1]], 256), [[0, 1], [1, 47]]);
  });

  it("orders the batch by sequence id, so llama.cpp keeps it in one micro-batch", () => {
    assert.deepEqual(plan([[3, 1], [0, 1], [5, 1], [1, 1], [2, 1], [4, 1]], 256).map(([s]) => s), [0, 1, 2, 3, 4, 5]);
  });

  it("leaves out what does not fit", () => {
    assert.deepEqual(plan([[2, 1], [1, 1], [0, 1]], 2), [[1, 1], [2, 1]]);
  });
});

describe("decode costs (when the native loop splits a round of reply steps)", () => {
  const trace = nativeAddon().decodeCostsTrace;

  it("measures the batch first, then the singles, then picks the cheaper way", () => {
    const out = trace(0.5, 1000, [["split", 2], ["record", 2, 20], ["split", 2], ["record", 1, 6.5], ["split", 2], ["record", 8, 40], ["split", 8], ["split", 1]]);
    // Nothing known: batch, and measure it; one token's cost unknown: try singles; 2 × 6.5 ms beats
    // 20 ms; 8 × 6.5 ms loses to 40 ms; one token is never split.
    assert.deepEqual(out, [false, true, true, false, false]);
  });

  it("follows changes: averages new measurements and now and then tries the other way", () => {
    const out = trace(0.5, 4, [["record", 1, 10], ["record", 2, 15], ["split", 2], ["split", 2], ["split", 2], ["split", 2], ["split", 2], ["record", 2, 25], ["estimate", 2], ["split", 2], ["record", 2, 40], ["split", 2]]);
    assert.deepEqual(out, [false, false, false, true, false, 20, false, true]);
  });
});

describe("thread counts (the native loop's ThreadChoice)", () => {
  const trace = nativeAddon().threadChoiceTrace;

  it("tries each count once, then keeps the faster per kind of decode", () => {
    const picks = trace([1, 2], 0.5, 1000, [["pick", 1], ["record", 1, 1, 6], ["pick", 1], ["record", 1, 2, 4], ["pick", 1], ["pick", 1], ["pick", 16], ["record", 16, 1, 80], ["pick", 16], ["record", 16, 2, 40], ["pick", 16]]);
    // One token: 1 thread measured first, then 2; 2 wins (4 ms vs 6). Batches are their own kind.
    assert.deepEqual(picks, [1, 2, 2, 2, 1, 2, 2]);
  });

  it("follows a change of load: a count that got slow loses its place", () => {
    const picks = trace([1, 2], 0.5, 1000, [["record", 1, 1, 6], ["record", 1, 2, 4], ["pick", 1], ["record", 1, 2, 30], ["pick", 1]]);
    assert.deepEqual(picks, [2, 1]);
  });

  it("now and then tries the other count", () => {
    const picks = trace([1, 2], 0.5, 4, [["record", 1, 1, 6], ["record", 1, 2, 4], ["pick", 1], ["pick", 1], ["pick", 1], ["pick", 1], ["pick", 1]]);
    assert.deepEqual(picks, [2, 2, 2, 1, 2]);
  });

  it("a fixed count is never changed", () => {
    assert.deepEqual(trace([2], 0.5, 2, [["record", 1, 2, 99], ["pick", 1], ["pick", 1], ["pick", 1]]), [2, 2, 2]);
  });
});
