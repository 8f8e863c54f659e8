import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ollama, type Message, type Tool } from "ollama";
import type { RunningDaemon } from "@nanollm/daemon";
import { inProcessDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel, toolEagerModel } from "./helpers/fixtures.js";
import { httpBase, postJson, userText } from "./helpers/http.js";

const MODEL = "tiny-chatml";

/**
 * A turn evaluated only what is new: the whole prompt less the previous prompt and reply, less
 * the few template tokens after that reply (evaluated when the previous turn ended).
 */
function assertOnlyNew(evaluated: number, full: number, before: number): void {
  assert.ok(evaluated <= full - before && evaluated >= full - before - 4, `${evaluated} tokens evaluated of ${full}; ${before} were there before`);
}

let fresh = 0;
/** Tokens a request's prompt takes evaluated from nothing (in a new pinned session). */
async function evaluatedAlone(d: { daemon: RunningDaemon }, model: string, messages: Message[], tools?: Tool[]): Promise<number> {
  const alone = new Ollama({ host: httpBase(d), headers: { "X-Nanollm-Session": `alone-${++fresh}` } });
  const r = await alone.chat({ model, messages, tools, stream: false, options: { num_predict: 1 } });
  return r.prompt_eval_count;
}

describe("the Ollama API through the official ollama client", () => {
  let d: TestDaemon & { daemon: RunningDaemon };
  let ollama: Ollama;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { http: {}, ctx: 2048 });
    ollama = new Ollama({ host: httpBase(d) });
  });
  after(() => d.stop());

  it("lists the model in tags and ps, and shows it", async () => {
    const tags = await ollama.list();
    assert.deepEqual(tags.models.map((m) => m.name), [`${MODEL}:latest`]);
    assert.equal(tags.models[0]!.details.format, "gguf");
    const ps = await ollama.ps();
    assert.deepEqual(ps.models.map((m) => m.name), [`${MODEL}:latest`]);
    const show = await ollama.show({ model: MODEL });
    assert.equal(show.details.family, "llama");
    assert.ok((await ollama.version()).version);
  });

  it("streams a chat as NDJSON, and the next turn evaluates only its new message", async () => {
    const messages: Message[] = [{ role: "user", content: userText(1, 1) }];
    let text = "";
    let last: Awaited<ReturnType<typeof ollama.chat>> | undefined;
    for await (const part of await ollama.chat({ model: MODEL, messages, stream: true, options: { num_predict: 8, temperature: 0 } })) {
      text += part.message.content;
      last = part;
    }
    assert.ok(text.length > 0);
    assert.equal(last!.done, true);
    assert.equal(last!.done_reason, "length");
    assert.equal(last!.eval_count, 8);
    const whole = await ollama.chat({ model: `${MODEL}:latest`, messages, stream: false, options: { num_predict: 8, temperature: 0 } });
    assert.equal(whole.message.content, text, "greedy: the same reply whole or streamed");
    assert.equal(whole.prompt_eval_count, 1, "the same prompt again: only its last token is evaluated");
    messages.push(whole.message, { role: "user", content: userText(1, 2) });
    const next = await ollama.chat({ model: MODEL, messages, stream: false, options: { num_predict: 8, temperature: 0 } });
    const full = await evaluatedAlone(d, MODEL, messages);
    assertOnlyNew(next.prompt_eval_count, full, last!.prompt_eval_count + 8);
  });

  it("generates from a prompt, chat-templated or raw", async () => {
    const r = await ollama.generate({ model: MODEL, prompt: "Once upon a time", stream: false, options: { num_predict: 6, temperature: 0 } });
    assert.equal(r.eval_count, 6);
    assert.ok(r.response!.length > 0);
    let raw = "";
    for await (const part of await ollama.generate({ model: MODEL, prompt: "Once upon a time", raw: true, stream: true, options: { num_predict: 6, temperature: 0 } })) raw += part.response;
    assert.ok(raw.length > 0);
    assert.notEqual(raw, r.response, "raw skips the chat template");
  });

  it("constrains output with format (a JSON schema)", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" }, size: { enum: ["S", "M", "L"] } }, required: ["ok", "size"], additionalProperties: false };
    const r = await ollama.chat({ model: MODEL, messages: [{ role: "user", content: "Answer in JSON" }], format: schema, stream: false, options: { num_predict: 100, temperature: 0 } });
    const value = JSON.parse(r.message.content) as { ok: unknown; size: unknown };
    assert.equal(typeof value.ok, "boolean");
    assert.ok(["S", "M", "L"].includes(value.size as string));
  });

  it("takes null for unset fields, as some clients send them", async () => {
    const r = await postJson(`${httpBase(d)}/api/chat`, { model: MODEL, messages: [{ role: "user", content: "Hi", images: null }], format: null, tools: null, stream: false, keep_alive: null, options: { num_predict: 4, temperature: null, seed: null, stop: null } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.eval_count, 4);
  });

  it("refuses images on a model without a projector with 409 and one sentence (images with a projector: httpImages.e2e)", async () => {
    await assert.rejects(ollama.chat({ model: MODEL, messages: [{ role: "user", content: "What is this?", images: ["aGVsbG8="] }] }), (err: Error & { status_code?: number }) => {
      assert.equal(err.status_code, 409);
      assert.match(err.message, /^The model tiny-chatml takes no images \(no projector is loaded\); start the daemon with --mmproj FILE, or send text only\.$/);
      return true;
    });
  });

  it("answers an unknown model with 404", async () => {
    await assert.rejects(ollama.chat({ model: "llama9", messages: [{ role: "user", content: "Hi" }], stream: false }), (err: Error & { status_code?: number }) => {
      assert.equal(err.status_code, 404);
      assert.match(err.message, /No model named "llama9" is loaded; use one of tiny-chatml/);
      return true;
    });
  });
});

describe("Ollama tool calls", () => {
  it("returns a tool call as message.tool_calls with object arguments", async (t) => {
    const d = await inProcessDaemon(toolEagerModel(), { http: {}, ctx: 4096 });
    t.after(() => d.stop());
    const ollama = new Ollama({ host: httpBase(d) });
    const tools: Tool[] = [{ type: "function", function: { name: "get_weather", description: "The weather of a city.", parameters: { type: "object", properties: { city: { type: "string", maxLength: 8 } as never }, required: ["city"] } } }];
    const r = await ollama.chat({ model: "tiny-tool-eager", messages: [{ role: "user", content: "Weather?" }], tools, stream: false, options: { num_predict: 120, temperature: 0 } });
    const call = r.message.tool_calls?.[0];
    assert.equal(call?.function.name, "get_weather");
    assert.equal(typeof call?.function.arguments.city, "string");
    const next = await ollama.chat({ model: "tiny-tool-eager", messages: [{ role: "user", content: "Weather?" }, r.message, { role: "tool", content: "cold" }], tools, stream: false, options: { num_predict: 120, temperature: 0 } });
    const full = await evaluatedAlone(d, "tiny-tool-eager", [{ role: "user", content: "Weather?" }, r.message, { role: "tool", content: "cold" }], tools);
    // The call was reused with its sampled ids: only the tool's result is evaluated.
    assertOnlyNew(next.prompt_eval_count, full, r.prompt_eval_count + r.eval_count);
  });
});
