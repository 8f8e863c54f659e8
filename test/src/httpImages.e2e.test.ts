// Images over the HTTP APIs: the OpenAI API's image_url parts (data: URLs, through the official
// openai client) and Ollama's base64 `images` (plain HTTP), on the tiny model and tiny projector.
// The oracle is the gRPC path: the same image and text give the same greedy reply.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type OpenAI from "openai";
import type { NanoClient } from "nanollm/dist/client/NanoClient.js";
import type { RunningDaemon } from "@nanollm/daemon";
import { inProcessDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tinyMmproj, tinyModel } from "./helpers/fixtures.js";
import { httpBase, openaiClient, postJson } from "./helpers/http.js";
import { checkerboard, gradient, makePng, webpBytes } from "./helpers/images.js";
import { rejectsWith } from "./helpers/assertions.js";

type Daemon = TestDaemon & { daemon: RunningDaemon };
const MODEL = "tiny-chatml";
const QUESTION = "What is in this picture?";
const pngA = makePng(64, 64, gradient);
const pngB = makePng(64, 64, checkerboard);
const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString("base64")}`;
const imagePart = (url: string): OpenAI.Chat.ChatCompletionContentPart => ({ type: "image_url", image_url: { url } });

/** The greedy reply over gRPC in a fresh session alike to the HTTP one (the model's template, no system prompt). */
async function grpcReply(client: NanoClient, turns: { text: string; images?: Buffer[]; offsets?: number[] }[], maxNewTokens: number): Promise<string[]> {
  const s = await client.createSession({ chatTemplate: "chat-ml", systemPrompt: "" });
  const replies: string[] = [];
  for (const t of turns) {
    const images = (t.images ?? []).map((data, i) => ({ name: `image ${i}`, data, offset: t.offsets?.[i] ?? 0 }));
    for await (const ev of client.turn(s.sessionId, t.text, { maxNewTokens }, undefined, undefined, images)) {
      if (ev.kind?.$case === "end") replies.push(ev.kind.end.reply);
    }
  }
  return replies;
}

/** An HTTP error that is one sentence and says `pattern`. */
function oneSentenceMatching(pattern: RegExp) {
  return (err: Error & { status?: number }) => err.status === 400 && pattern.test(err.message) && !/\n/.test(err.message) && /\.$/.test(err.message);
}

describe("images through the OpenAI API (official openai client)", () => {
  let d: Daemon;
  let client: OpenAI;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { http: {}, ctx: 2048, parallel: 2, daemon: { mmproj: tinyMmproj() } });
    client = openaiClient(d);
  });
  after(() => d.stop());

  const ask = async (content: OpenAI.Chat.ChatCompletionContentPart[], history: OpenAI.Chat.ChatCompletionMessageParam[] = [], stream = false) => {
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [...history, { role: "user", content }];
    if (!stream) return client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0 });
    let text = "";
    for await (const chunk of await client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 0, stream: true })) text += chunk.choices[0]?.delta.content ?? "";
    return { choices: [{ message: { content: text } }], usage: undefined };
  };

  it("the image changes the greedy reply, and equals the gRPC reply for the same image and text (streamed too)", async () => {
    const withA = (await ask([imagePart(dataUrl(pngA)), { type: "text", text: QUESTION }])).choices[0]!.message.content!;
    const withB = (await ask([imagePart(dataUrl(pngB)), { type: "text", text: QUESTION }])).choices[0]!.message.content!;
    const none = (await ask([{ type: "text", text: QUESTION }])).choices[0]!.message.content!;
    assert.notEqual(withA, withB, "another image, another reply");
    assert.notEqual(withA, none, "the image changes the reply");
    assert.deepEqual([withA], await grpcReply(d.client, [{ text: QUESTION, images: [pngA] }], 12));
    const streamed = (await ask([imagePart(dataUrl(pngA)), { type: "text", text: QUESTION }], [], true)).choices[0]!.message.content;
    assert.equal(streamed, withA);
  });

  it("the turn after an image reuses it from the cache and equals the gRPC session's second turn", async () => {
    const first = await ask([imagePart(dataUrl(pngB)), { type: "text", text: "Look at this." }]);
    const reply = first.choices[0]!.message.content!;
    const history: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: "user", content: [imagePart(dataUrl(pngB)), { type: "text", text: "Look at this." }] },
      { role: "assistant", content: reply },
    ];
    const second = await ask([{ type: "text", text: "Tell me more." }], history);
    const usage = second.usage!;
    assert.ok(usage.prompt_tokens - usage.prompt_tokens_details!.cached_tokens! < 20, `the image came from the cache: ${JSON.stringify(usage)}`);
    assert.deepEqual([reply, second.choices[0]!.message.content], await grpcReply(d.client, [{ text: "Look at this.", images: [pngB] }, { text: "Tell me more." }], 12));
  });

  it("images among the text parts stand where they were sent, as gRPC offsets place them; the next turn reuses them", async () => {
    const lead = "Compare this: ";
    const middle = " with this: ";
    const parts = [{ type: "text" as const, text: lead }, imagePart(dataUrl(pngA)), { type: "text" as const, text: middle }, imagePart(dataUrl(pngB))];
    const placed = (await ask(parts)).choices[0]!.message.content!;
    const first = (await ask([imagePart(dataUrl(pngA)), imagePart(dataUrl(pngB)), { type: "text", text: lead + middle }])).choices[0]!.message.content!;
    assert.notEqual(placed, first, "where the images stand changes the prompt, and the reply");
    const offsets = [[...lead].length, [...(lead + middle)].length];
    assert.deepEqual([placed], await grpcReply(d.client, [{ text: lead + middle, images: [pngA, pngB], offsets }], 12));
    const second = await ask([{ type: "text", text: "More?" }], [{ role: "user", content: parts }, { role: "assistant", content: placed }]);
    const usage = second.usage!;
    assert.ok(usage.prompt_tokens - usage.prompt_tokens_details!.cached_tokens! < 20, `the placed images (16 positions each) came from the cache: ${JSON.stringify(usage)}`);
  });

  it("a gRPC image offset past the end of the text is one sentence, and nothing is sent to the model", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml" });
    const turn = async () => {
      for await (const _ of d.client.turn(s.sessionId, "Hi", { maxNewTokens: 4 }, undefined, undefined, [{ name: "a.png", data: pngA, offset: 3 }]));
    };
    await rejectsWith(turn(), "INVALID_ARGUMENT", /^The image a\.png stands at character 3, past the end of the 2-character text; give an offset from 0 to 2\.$/);
    assert.equal((await d.client.getSession(s.sessionId, true)).history.length, 0);
  });

  it("a pinned session asked the same question about another picture answers as a fresh session does", { timeout: 30_000 }, async () => {
    // The cache holds "<|im_start|>user\n" from the first request: the second's new part starts with its image.
    const pinned = openaiClient(d, { "X-Nanollm-Session": "pinned-pictures" });
    const asked = (png: Buffer) => pinned.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: [imagePart(dataUrl(png)), { type: "text", text: QUESTION }] }], max_tokens: 12, temperature: 0 });
    await asked(pngA);
    const b = await asked(pngB);
    assert.ok(b.usage!.prompt_tokens_details!.cached_tokens! > 0, "the text before the image came from the cache");
    assert.deepEqual([b.choices[0]!.message.content], await grpcReply(d.client, [{ text: QUESTION, images: [pngB] }], 12));
  });

  it("a remote URL, bad data: URLs, WebP, bad bytes and too many images: 400 with one sentence each, and the daemon keeps serving", async () => {
    await assert.rejects(ask([imagePart("https://example.com/cat.png"), { type: "text", text: QUESTION }]), oneSentenceMatching(/remote URL.*fetches no URL.*inline as a data: URL/));
    await assert.rejects(ask([imagePart("data:image/png,rawbytes")]), oneSentenceMatching(/without ;base64/));
    await assert.rejects(ask([imagePart("data:image/png;base64,@@@@")]), oneSentenceMatching(/messages\[0\]\.content\[0\] is not valid base64/));
    await assert.rejects(ask([imagePart(`data:image/webp;base64,${webpBytes().toString("base64")}`)]), oneSentenceMatching(/WebP.*convert it to PNG or JPEG/));
    await assert.rejects(ask([imagePart(`data:image/png;base64,${Buffer.from("not an image").toString("base64")}`)]), oneSentenceMatching(/could not be (read|decoded)/));
    await assert.rejects(ask(Array.from({ length: 9 }, () => imagePart(dataUrl(pngA)))), oneSentenceMatching(/9 images, more than the limit of 8/));
    await assert.rejects(ask([imagePart(`data:image/png;base64,${Buffer.alloc(10 * 1024 * 1024 + 1, 7).toString("base64")}`)]), oneSentenceMatching(/is 10485761 bytes, more than the limit of 10485760; send a smaller file/));
    await assert.rejects(ask([{ type: "input_audio", input_audio: { data: "", format: "wav" } }]), oneSentenceMatching(/"input_audio" content part/));
    const ok = await ask([{ type: "text", text: "Still there?" }]);
    assert.ok(ok.choices[0]!.message.content!.length > 0);
  });
});

describe("images through the Ollama API (plain HTTP)", () => {
  let d: Daemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { http: {}, ctx: 2048, parallel: 2, daemon: { mmproj: tinyMmproj() } });
  });
  after(() => d.stop());
  const options = { temperature: 0, num_predict: 12 };
  const chat = (images: Buffer[] | undefined, text = QUESTION) =>
    postJson(`${httpBase(d)}/api/chat`, { model: MODEL, stream: false, options, messages: [{ role: "user", content: text, ...(images ? { images: images.map((b) => b.toString("base64")) } : {}) }] });

  it("/api/show lists the vision capability", async () => {
    const r = await postJson(`${httpBase(d)}/api/show`, { model: MODEL });
    assert.ok((r.json.capabilities as string[]).includes("vision"), r.text);
  });

  it("/api/chat and /api/generate: the image changes the greedy reply and equals the gRPC reply", async () => {
    const withA = await chat([pngA]);
    const withB = await chat([pngB]);
    const none = await chat(undefined);
    assert.equal(withA.status, 200, withA.text);
    const text = (r: { json: Record<string, unknown> }) => (r.json.message as { content: string }).content;
    assert.notEqual(text(withA), text(withB));
    assert.notEqual(text(withA), text(none));
    assert.deepEqual([text(withA)], await grpcReply(d.client, [{ text: QUESTION, images: [pngA] }], 12));
    const generated = await postJson(`${httpBase(d)}/api/generate`, { model: MODEL, stream: false, options, prompt: QUESTION, images: [pngA.toString("base64")] });
    assert.equal(generated.status, 200, generated.text);
    assert.equal(generated.json.response, text(withA));
  });

  it("bad base64, WebP and images on an assistant message: 400 in Ollama's error shape, one sentence", async () => {
    const bad = await postJson(`${httpBase(d)}/api/chat`, { model: MODEL, stream: false, messages: [{ role: "user", content: "hm", images: ["%%%"] }] });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error as string, /^messages\[0\]\.images\[0\] is not valid base64; .*\.$/);
    const webp = await postJson(`${httpBase(d)}/api/generate`, { model: MODEL, stream: false, prompt: "hm", images: [webpBytes().toString("base64")] });
    assert.equal(webp.status, 400);
    assert.match(webp.json.error as string, /^The image images\[0\] is WebP, which the daemon cannot read; convert it to PNG or JPEG first\.$/);
    const assistant = await postJson(`${httpBase(d)}/api/chat`, {
      model: MODEL,
      stream: false,
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "yo", images: [pngA.toString("base64")] }, { role: "user", content: "so?" }],
    });
    assert.equal(assistant.status, 400);
    assert.match(assistant.json.error as string, /^Message 1 \(assistant\) carries images; only user messages may carry images\.$/);
  });
});

describe("images over HTTP to a model without a projector", () => {
  it("are refused as over gRPC: 409 and the same sentence", async () => {
    const d = await inProcessDaemon(tinyModel(), { http: {}, parallel: 1 });
    try {
      await assert.rejects(
        openaiClient(d).chat.completions.create({ model: MODEL, messages: [{ role: "user", content: [imagePart(dataUrl(pngA)), { type: "text", text: QUESTION }] }], max_tokens: 4 }),
        (err: Error & { status?: number }) => err.status === 409 && /takes no images \(no projector is loaded\); start the daemon with --mmproj FILE, or send text only\./.test(err.message),
      );
      const r = await postJson(`${httpBase(d)}/api/generate`, { model: MODEL, stream: false, prompt: QUESTION, images: [pngA.toString("base64")] });
      assert.equal(r.status, 409);
      assert.match(r.json.error as string, /takes no images/);
    } finally {
      await d.stop();
    }
  });
});
