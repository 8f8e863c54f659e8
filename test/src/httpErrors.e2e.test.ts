import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import OpenAI from "openai";
import { TokenFile, type Authorize, type RunningDaemon } from "@nanollm/daemon";
import { fail } from "@nanollm/shared";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { inProcessDaemon, spawnDaemon, type TestDaemon } from "./helpers/daemon.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";
import { httpBase, postJson, userText } from "./helpers/http.js";

const MODEL = "tiny-chatml";
const BODY_LIMIT = 64 * 1024;

/**
 * Posts a chat, retrying while it is refused with 429: the daemon below has one sequence and no
 * queue, and a turn's sequence stays busy for a moment after the turn (its cache is brought up to
 * date, or a cancelled turn winds down).
 */
async function postPatiently(url: string, body: object, headers: Record<string, string> = {}) {
  let r = await postJson(url, body, headers);
  for (let tries = 0; r.status === 429 && tries < 200; tries++) {
    await new Promise((res) => setTimeout(res, 20));
    r = await postJson(url, body, headers);
  }
  return r;
}

/** Starts a streamed chat and returns once its first event arrived; abort() drops the connection. */
async function startStream(base: string, body: object, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const open = () => fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ ...body, stream: true }), signal: abort.signal });
  let res = await open();
  for (let tries = 0; res.status === 429 && tries < 200; tries++) {
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 20));
    res = await open();
  }
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  await reader.read();
  return { abort: () => abort.abort() };
}

describe("bad HTTP requests get one clear error, and the daemon keeps serving", () => {
  let d: TestDaemon & { daemon: RunningDaemon };
  let base: string;
  const hello = { model: MODEL, messages: [{ role: "user", content: "Hello" }], max_tokens: 4 };
  before(async () => {
    // One KV sequence and no queue, so a second concurrent turn is refused at once.
    d = await inProcessDaemon(tinyModel(), { http: { bodyBytes: BODY_LIMIT }, parallel: 1, maxQueue: 0, ctx: 2048, maxStatelessSessions: 2 });
    base = httpBase(d);
  });
  after(() => d.stop());

  const cases: [string, string, string | object, number, RegExp][] = [
    ["malformed JSON", "/v1/chat/completions", '{"model": "tiny-chatml", "messages": [', 400, /^The request body is not valid JSON \(.*\); send one JSON object\.$/],
    ["a wrong type", "/v1/chat/completions", { ...hello, temperature: "hot" }, 400, /^The request is invalid: temperature must be number; fix that field and retry\.$/],
    ["a list that is not one", "/v1/chat/completions", { ...hello, messages: "Hello" }, 400, /^The request is invalid: messages must be array; fix that field and retry\.$/],
    ["an unknown role", "/v1/chat/completions", { ...hello, messages: [{ role: "wizard", content: "Hi" }] }, 400, /messages\.0\.role must be equal to one of the allowed values \(one of system, developer, user, assistant, tool\)/],
    ["no model", "/v1/chat/completions", { messages: hello.messages }, 400, /must have required property 'model'/],
    ["an unknown model", "/v1/chat/completions", { ...hello, model: "gpt-4o" }, 404, /^No model named "gpt-4o" is loaded; use one of tiny-chatml/],
    ["n above 1", "/v1/chat/completions", { ...hello, n: 3 }, 400, /^n is 3; nanollm returns one choice per request/],
    ["a conversation ending with the assistant", "/v1/chat/completions", { ...hello, messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }] }, 400, /end the conversation with a user or tool message/],
    ["too many tokens asked", "/v1/chat/completions", { ...hello, max_tokens: 100000 }, 400, /^max_tokens is 100000, more than the limit of 32768/],
    ["an unknown path", "/v1/embeddings", hello, 404, /^There is no POST \/v1\/embeddings; the OpenAI API is under \/v1/],
  ];
  for (const [label, path, body, status, message] of cases) {
    it(`answers ${label} with ${status} in the OpenAI error shape`, async () => {
      const r = await postJson(base + path, body);
      assert.equal(r.status, status, r.text);
      const error = r.json.error as { message: string; type: string };
      assert.match(error.message, message);
      assert.equal(error.type, status === 404 ? "not_found_error" : "invalid_request_error");
    });
  }

  it("answers Ollama's routes in Ollama's error shape", async () => {
    const bad = await postJson(`${base}/api/chat`, "{nope");
    assert.equal(bad.status, 400);
    assert.match(bad.json.error as string, /^The request body is not valid JSON/);
    const unknown = await postJson(`${base}/api/generate`, { model: "llama9", prompt: "Hi" });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.error as string, /^No model named "llama9"/);
  });

  it("refuses a body over the limit with 413", async () => {
    const r = await postJson(`${base}/v1/chat/completions`, { ...hello, messages: [{ role: "user", content: "x".repeat(BODY_LIMIT) }] });
    assert.equal(r.status, 413);
    assert.equal((r.json.error as { message: string }).message, `The request body is larger than the limit of ${BODY_LIMIT} bytes; send a shorter conversation.`);
  });

  it("cancels the generation of a client that disconnects mid-stream", async () => {
    const stream = await startStream(base, { ...hello, max_tokens: 1500, temperature: 0 }, { "X-Nanollm-Session": "abort-me" });
    stream.abort();
    const started = Date.now();
    let info = await d.client.getSession("abort-me", true);
    while (info.busy && Date.now() - started < 5000) {
      await new Promise((r) => setTimeout(r, 20));
      info = await d.client.getSession("abort-me", true);
    }
    assert.equal(info.busy, false, "the turn ended");
    const reply = info.history.at(-1)!;
    assert.ok(reply.tokenIds.length < 500, `cut short, not generated to its limit (${reply.tokenIds.length} tokens)`);
  });

  it("refuses a turn with 429 and Retry-After when every sequence is busy and the queue is full", async () => {
    const hog = await startStream(base, { ...hello, messages: [{ role: "user", content: userText(3, 1) }], max_tokens: 1500, temperature: 0 });
    try {
      const r = await postJson(`${base}/v1/chat/completions`, { ...hello, messages: [{ role: "user", content: userText(4, 1) }] });
      assert.equal(r.status, 429, r.text);
      assert.equal(r.headers.get("retry-after"), "1");
      assert.match((r.json.error as { message: string }).message, /KV-cache sequences are busy/);
      assert.equal((r.json.error as { type: string }).type, "rate_limit_error");
    } finally {
      hog.abort();
    }
  });

  it("keeps at most the configured number of stateless sessions, least recently used dropped first", async () => {
    const send = async (messages: { role: string; content: string }[]) => {
      const r = await postPatiently(`${base}/v1/chat/completions`, { ...hello, messages, temperature: 0 });
      assert.equal(r.status, 200, r.text);
      const cached = (r.json.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens;
      return { cached, reply: (r.json.choices as { message: { content: string } }[])[0]!.message.content };
    };
    const chat = async (c: number, turns: number) => {
      const messages: { role: string; content: string }[] = [];
      let cached = 0;
      for (let t = 1; t <= turns; t++) {
        messages.push({ role: "user", content: userText(c, t) });
        const r = await send(messages);
        cached = r.cached;
        messages.push({ role: "assistant", content: r.reply });
      }
      return { cached, messages };
    };
    const a = await chat(10, 1);
    await chat(11, 1);
    await chat(12, 1);
    assert.ok((await chat(12, 2)).cached > 0, "a kept chat reuses its cache");
    a.messages.push({ role: "user", content: userText(10, 2) });
    assert.equal((await send(a.messages)).cached, 0, "the oldest chat's session was dropped");
  });

  it("still serves after all of that", async () => {
    const r = await postPatiently(`${base}/v1/chat/completions`, hello);
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json.usage as { completion_tokens: number }).completion_tokens, 4);
  });
});

describe("HTTP authentication", () => {
  it("takes the daemon's tokens (an OpenAI API key is a nanollm token) and keeps each identity's caches apart", async (t) => {
    const dataDir = tempDir("http-auth");
    const tokens = new TokenFile(path.join(dataDir, "tokens.json"));
    const alice = tokens.add("alice", false);
    const bob = tokens.add("bob", false);
    const d = await inProcessDaemon(tinyModel(), { http: {}, dataDir });
    t.after(() => d.stop());
    const base = httpBase(d);
    const body = { model: MODEL, messages: [{ role: "user", content: userText(7, 1) }], max_tokens: 4, temperature: 0 };
    const none = await postJson(`${base}/v1/chat/completions`, body);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="nanollm"');
    assert.match((none.json.error as { message: string }).message, /^This daemon requires a token/);
    assert.equal((none.json.error as { type: string }).type, "authentication_error");
    const wrong = await postJson(`${base}/api/chat`, { ...body, stream: false }, { authorization: "Bearer nope" });
    assert.equal(wrong.status, 401);
    assert.match(wrong.json.error as string, /did not accept this token/);
    const asAlice = new OpenAI({ baseURL: `${base}/v1`, apiKey: alice, maxRetries: 0 });
    const asBob = new OpenAI({ baseURL: `${base}/v1`, apiKey: bob, maxRetries: 0 });
    const first = await asAlice.chat.completions.create(body as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    // The same request from another identity shares nothing with Alice's cache.
    const same = await asBob.chat.completions.create(body as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(same.usage!.prompt_tokens_details!.cached_tokens, 0);
    const again = await asAlice.chat.completions.create(body as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    assert.equal(again.usage!.prompt_tokens_details!.cached_tokens, first.usage!.prompt_tokens - 1);
  });

  it("calls a custom authorization hook once per request, before the body is read", async (t) => {
    const seen: string[] = [];
    const authorize: Authorize = ({ headers }) => {
      seen.push(String(headers["x-probe"]));
      if (headers.authorization !== "Bearer good") throw fail.unauthenticated("The bearer token is wrong; send the daemon's token.");
      return { name: "probe", admin: false, loopback: true, via: "token" };
    };
    const d = await inProcessDaemon(tinyModel(), { http: { authorize } });
    t.after(() => d.stop());
    const refused = await postJson(`${httpBase(d)}/v1/chat/completions`, "{not json", { "x-probe": "1" });
    assert.equal(refused.status, 401);
    assert.equal((refused.json.error as { message: string }).message, "The bearer token is wrong; send the daemon's token.");
    const allowed = await fetch(`${httpBase(d)}/api/tags`, { headers: { "x-probe": "2", authorization: "Bearer good" } });
    assert.equal(allowed.status, 200);
    assert.deepEqual(seen, ["1", "2"]);
  });
});

describe("HTTP and shutdown", () => {
  it("ends open streams when the daemon shuts down, and closes in time", async () => {
    const d = await inProcessDaemon(tinyModel(), { http: {}, ctx: 4096 });
    const res = await fetch(`${httpBase(d)}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "Go on" }], max_tokens: 4000, temperature: 0, stream: true }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    const started = Date.now();
    await d.daemon.close(200);
    // The stream ends (the turn was cancelled) rather than hanging.
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.ok(Date.now() - started < 5000, `closed in ${Date.now() - started} ms`);
    assert.match(rest, /\[DONE\]|"error"/);
    d.client.close();
  });

  it("keeps a pinned session across a restart, its cache included", async () => {
    const dataDir = tempDir("http-pinned");
    const pin = { "X-Nanollm-Session": "kept" };
    const messages = [{ role: "user", content: userText(5, 1) }];
    const first = await inProcessDaemon(tinyModel(), { http: {}, dataDir });
    const r = await postJson(`${httpBase(first)}/v1/chat/completions`, { model: MODEL, messages, max_tokens: 6, temperature: 0 }, pin);
    const reply = (r.json.choices as { message: { content: string } }[])[0]!.message.content;
    await first.stop();
    const second = await inProcessDaemon(tinyModel(), { http: {}, dataDir });
    try {
      assert.deepEqual((await second.client.getSession("kept", true)).history.map((m) => m.text), [messages[0]!.content, reply]);
      messages.push({ role: "assistant", content: reply }, { role: "user", content: userText(5, 2) });
      const next = await postJson(`${httpBase(second)}/v1/chat/completions`, { model: MODEL, messages, max_tokens: 6, temperature: 0 }, pin);
      const usage = next.json.usage as { prompt_tokens_details: { cached_tokens: number } };
      assert.ok(usage.prompt_tokens_details.cached_tokens >= (r.json.usage as { total_tokens: number }).total_tokens, "the parked cache came back");
    } finally {
      await second.stop();
    }
  });

  it("leaves no parked caches of stateless sessions on disk after shutdown", async () => {
    const dataDir = tempDir("http-data");
    const d = await inProcessDaemon(tinyModel(), { http: {}, parallel: 1, dataDir });
    // Three chats on one sequence: each turn parks the previous chat's cache on disk.
    for (const c of [1, 2, 3]) assert.equal((await postJson(`${httpBase(d)}/v1/chat/completions`, { model: MODEL, messages: [{ role: "user", content: userText(c, 1) }], max_tokens: 4 })).status, 200);
    const parked = () => fs.readdirSync(path.join(dataDir, "kv"), { recursive: true }).filter((f) => String(f).endsWith(".kv"));
    assert.ok(parked().length > 0, "caches were parked while the daemon ran");
    await d.stop();
    assert.deepEqual(parked(), []);
  });
});

describe("nanollm serve --http", () => {
  it("serves the HTTP APIs where --http says, and says where", async (t) => {
    const d = await spawnDaemon(tinyModel(), ["--http", "127.0.0.1:0"]);
    t.after(() => d.stop());
    const base = /OpenAI API on (http:\/\/\S+)\/v1/.exec(d.log())?.[1];
    assert.ok(base, d.log());
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
  });

  it("refuses to serve HTTP off loopback without --insecure (no TLS there)", async () => {
    await assert.rejects(spawnDaemon(tinyModel(), ["--http", "0.0.0.0:0"]), /Refusing to serve the HTTP APIs on 0\.0\.0\.0:0: they have no TLS/);
  });

  it("refuses to start when the --http address asked for is taken, saying what to do", async (t) => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    t.after(() => blocker.close());
    const port = (blocker.address() as net.AddressInfo).port;
    await assert.rejects(spawnDaemon(tinyModel(), ["--http", `127.0.0.1:${port}`]), /Cannot serve HTTP on 127\.0\.0\.1:\d+ \(.*\); pick another address with --http, or --http off\./);
  });
});
