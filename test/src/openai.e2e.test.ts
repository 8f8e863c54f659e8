import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Ajv } from "ajv";
import type OpenAI from "openai";
import { ChatOpenAI } from "@langchain/openai";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel, toolEagerModel } from "./helpers/fixtures.js";
import { httpBase, openaiClient, userText } from "./helpers/http.js";
import type { RunningDaemon } from "@nanollm/daemon";

type Daemon = TestDaemon & { daemon: RunningDaemon };
type Msg = OpenAI.Chat.ChatCompletionMessageParam;
const MODEL = "tiny-chatml";

describe("the OpenAI API through the official openai client", () => {
  let d: Daemon;
  let client: OpenAI;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { http: {}, ctx: 2048 });
    client = openaiClient(d);
  });
  after(() => d.stop());

  it("lists the loaded model", async () => {
    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [MODEL]);
    assert.equal((await client.models.retrieve(MODEL)).id, MODEL);
    await assert.rejects(client.models.retrieve("gpt-4o"), (err: Error & { status?: number }) => err.status === 404 && /No model named "gpt-4o"/.test(err.message));
  });

  it("answers a chat, and streams the same reply with usage at the end", async () => {
    const messages: Msg[] = [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello there" }];
    const whole = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
    const reply = whole.choices[0]!.message.content!;
    assert.ok(reply.length > 0);
    assert.equal(whole.choices[0]!.finish_reason, "length");
    assert.equal(whole.usage!.completion_tokens, 8);
    assert.equal(whole.usage!.total_tokens, whole.usage!.prompt_tokens + 8);
    const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined | null;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish ??= chunk.choices[0]?.finish_reason;
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, reply, "greedy: the stream carries the same reply");
    assert.equal(finish, "length");
    assert.equal(usage!.prompt_tokens, whole.usage!.prompt_tokens);
    assert.equal(usage!.prompt_tokens_details!.cached_tokens, usage!.prompt_tokens - 1, "the same prompt again: all but the last token reused");
  });

  it("stops at a stop string (not shown), honours max_completion_tokens, and repeats a sampled reply with the same seed", async () => {
    const messages: Msg[] = [{ role: "user", content: "Say something" }];
    const plain = (await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 12, temperature: 0 })).choices[0]!;
    assert.equal(plain.finish_reason, "length");
    const words = plain.message.content!.trim().split(/\s+/);
    assert.ok(words.length >= 3, plain.message.content!);
    const stop = words[2]!;
    const stopped = (await client.chat.completions.create({ model: MODEL, messages, max_completion_tokens: 12, temperature: 0, stop: [stop] })).choices[0]!;
    assert.equal(stopped.finish_reason, "stop");
    assert.equal(stopped.message.content, plain.message.content!.slice(0, plain.message.content!.indexOf(stop)));
    const sampled = () => client.chat.completions.create({ model: MODEL, messages, max_tokens: 12, temperature: 1.5, top_p: 0.95, seed: 42 });
    assert.equal((await sampled()).choices[0]!.message.content, (await sampled()).choices[0]!.message.content);
  });

  it("reuses the cache over a 20-turn chat: each turn evaluates only its new message, as a gRPC session does, with the same replies", async () => {
    const grpc = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "" });
    const messages: Msg[] = [];
    let prev: OpenAI.CompletionUsage | undefined;
    for (let t = 1; t <= 20; t++) {
      const text = userText(0, t);
      messages.push({ role: "user", content: text });
      const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
      const usage = r.usage!;
      const reply = r.choices[0]!.message.content!;
      const oracle = await turn(d.client, grpc.sessionId, text, 8);
      assert.equal(reply, oracle.text, `turn ${t}: the same reply as the gRPC session`);
      assert.equal(usage.prompt_tokens, oracle.end.stats!.inputTokens, `turn ${t}: the same prompt`);
      assert.equal(usage.prompt_tokens_details!.cached_tokens, oracle.end.stats!.reusedTokens, `turn ${t}: the same reuse`);
      if (prev) {
        const cached = usage.prompt_tokens_details!.cached_tokens!;
        assert.ok(cached >= prev.prompt_tokens + prev.completion_tokens, `turn ${t}: the whole previous exchange is reused (${cached} of ${usage.prompt_tokens})`);
        assert.ok(usage.prompt_tokens - cached <= 40, `turn ${t}: only the new message is evaluated (${usage.prompt_tokens - cached} tokens)`);
      }
      prev = usage;
      messages.push({ role: "assistant", content: reply });
    }
    await d.client.deleteSession(grpc.sessionId);
  });

  it("keeps the reuse of 8 chats interleaved, more chats than KV sequences", async () => {
    const chats: Msg[][] = Array.from({ length: 8 }, () => [{ role: "system", content: "You are a helpful AI assistant." }]);
    const last: (OpenAI.CompletionUsage | undefined)[] = [];
    for (let t = 1; t <= 4; t++) {
      await Promise.all(
        chats.map(async (messages, c) => {
          messages.push({ role: "user", content: userText(c + 1, t) });
          const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 6, temperature: 0 });
          const usage = r.usage!;
          const before = last[c];
          if (before) {
            const cached = usage.prompt_tokens_details!.cached_tokens!;
            assert.ok(cached >= before.prompt_tokens + before.completion_tokens, `chat ${c} turn ${t}: reused ${cached} of ${usage.prompt_tokens}`);
          }
          last[c] = usage;
          messages.push({ role: "assistant", content: r.choices[0]!.message.content });
        }),
      );
    }
  });

  it("gives the same reply with the cache as without it (a fresh pinned session)", async () => {
    const messages: Msg[] = [{ role: "user", content: userText(9, 1) }];
    const first = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
    messages.push({ role: "assistant", content: first.choices[0]!.message.content }, { role: "user", content: userText(9, 2) });
    const cached = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
    assert.ok(cached.usage!.prompt_tokens_details!.cached_tokens! > 0);
    const fresh = await openaiClient(d, { "X-Nanollm-Session": "fresh-oracle" }).chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
    assert.equal(fresh.usage!.prompt_tokens_details!.cached_tokens, 0, "a new session evaluates everything");
    assert.equal(fresh.usage!.prompt_tokens, cached.usage!.prompt_tokens, "the same tokens (the reply's sampled ids were kept)");
    assert.equal(fresh.choices[0]!.message.content, cached.choices[0]!.message.content);
  });

  it("keeps a pinned session (X-Nanollm-Session) journaled and listed; stateless ones are not listed", async () => {
    const pinned = openaiClient(d, { "X-Nanollm-Session": "my-chat" });
    const messages: Msg[] = [{ role: "user", content: "Hi" }];
    const r = await pinned.chat.completions.create({ model: MODEL, messages, max_tokens: 4, temperature: 0 });
    const info = await d.client.getSession("my-chat", true);
    assert.deepEqual(info.history.map((m) => m.text), ["Hi", r.choices[0]!.message.content]);
    const ids = (await d.client.listSessions()).map((s) => s.sessionId);
    assert.ok(ids.includes("my-chat"));
    assert.ok(ids.every((id) => id === "my-chat" || id === "fresh-oracle"), `only pinned sessions are listed: ${ids.join(", ")}`);
    messages.push({ role: "assistant", content: r.choices[0]!.message.content }, { role: "user", content: "More" });
    const next = await pinned.chat.completions.create({ model: MODEL, messages, max_tokens: 4, temperature: 0 });
    assert.ok(next.usage!.prompt_tokens_details!.cached_tokens! >= r.usage!.prompt_tokens);
    await assert.rejects(pinned.chat.completions.create({ model: MODEL, messages, max_tokens: 4 }, { headers: { "X-Nanollm-Session": "bad id!" } }), /X-Nanollm-Session header/);
  });

  it("returns JSON for response_format json_schema that parses and validates", async () => {
    const schema = {
      type: "object",
      properties: { ok: { type: "boolean" }, color: { enum: ["red", "green", "blue"] }, n: { type: "integer" } },
      required: ["ok", "color", "n"],
      additionalProperties: false,
    };
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Describe a color as JSON." }],
      max_tokens: 200,
      temperature: 0,
      response_format: { type: "json_schema", json_schema: { name: "color", strict: true, schema } },
    });
    const value = JSON.parse(r.choices[0]!.message.content!) as unknown;
    assert.ok(new Ajv().validate(schema, value), JSON.stringify(value));
    // Any object: this random model writes one endless key, but it is inside a JSON object.
    const any = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "JSON please" }], max_tokens: 20, temperature: 0, response_format: { type: "json_object" } });
    assert.match(any.choices[0]!.message.content!, /^\{\s*("|\})/);
  });

  it("completes a raw prompt on /v1/completions", async () => {
    const r = await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 6, temperature: 0 });
    assert.equal(r.usage!.completion_tokens, 6);
    assert.ok(r.choices[0]!.text.length > 0);
    let streamed = "";
    for await (const chunk of await client.completions.create({ model: MODEL, prompt: "Once upon a time", max_tokens: 6, temperature: 0, stream: true })) streamed += chunk.choices[0]?.text ?? "";
    assert.equal(streamed, r.choices[0]!.text);
  });

  it("works with LangChain's ChatOpenAI (invoke and stream)", async () => {
    const chat = new ChatOpenAI({ model: MODEL, apiKey: "unused", temperature: 0, maxTokens: 8, maxRetries: 0, configuration: { baseURL: `${httpBase(d)}/v1` } });
    const answer = await chat.invoke([
      ["system", "Be brief."],
      ["human", "Tell me a story"],
    ]);
    assert.ok(typeof answer.content === "string" && answer.content.length > 0);
    let streamed = "";
    for await (const chunk of await chat.stream([
      ["system", "Be brief."],
      ["human", "Tell me a story"],
    ])) {
      streamed += chunk.content as string;
    }
    assert.equal(streamed, answer.content);
  });
});

describe("OpenAI tool calls on the real engine", () => {
  let d: Daemon;
  before(async () => {
    // This model opens a tool call whenever it may; the tool grammar shapes what follows.
    d = await inProcessDaemon(toolEagerModel(), { http: {}, ctx: 4096 });
  });
  after(() => d.stop());

  const tools: OpenAI.Chat.ChatCompletionTool[] = [
    {
      type: "function",
      function: {
        name: "get_weather",
        description: "The weather of a city.",
        parameters: { type: "object", properties: { city: { type: "string", maxLength: 8 }, days: { type: "integer" } }, required: ["city", "days"] },
      },
    },
  ];

  it("returns a tool call, takes the tool's result back, and reuses the call's tokens", async () => {
    const client = openaiClient(d);
    const messages: Msg[] = [{ role: "user", content: "Weather in Oslo?" }];
    const first = await client.chat.completions.create({ model: "tiny-tool-eager", messages, tools, max_tokens: 120, temperature: 0 });
    const choice = first.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.function.name, "get_weather");
    const args = JSON.parse(call.function.arguments) as { city: unknown; days: unknown };
    assert.equal(typeof args.city, "string");
    assert.ok(Number.isInteger(args.days));
    assert.ok(!choice.message.content?.includes("get_weather"), "the call's JSON is not in the content");
    messages.push(choice.message, { role: "tool", tool_call_id: call.id, content: "cold and windy" });
    const second = await client.chat.completions.create({ model: "tiny-tool-eager", messages, tools, max_tokens: 120, temperature: 0 });
    assert.ok(second.usage!.prompt_tokens_details!.cached_tokens! >= first.usage!.prompt_tokens + first.usage!.completion_tokens - 1, "the call was reused with its sampled ids");
    // Streamed, the call comes as a tool_calls delta and no call JSON comes as text.
    let text = "";
    const calls: string[] = [];
    for await (const chunk of await client.chat.completions.create({ model: "tiny-tool-eager", messages, tools, max_tokens: 120, temperature: 0, stream: true })) {
      text += chunk.choices[0]?.delta.content ?? "";
      for (const c of chunk.choices[0]?.delta.tool_calls ?? []) calls.push(c.function!.name!);
    }
    assert.deepEqual(calls, ["get_weather"]);
    assert.ok(!text.includes("{"), text);
  });

  it("accepts a tool call it did not make (history from elsewhere) in the template's format", async () => {
    const client = openaiClient(d);
    const r = await client.chat.completions.create({
      model: "tiny-tool-eager",
      tools,
      max_tokens: 120,
      temperature: 0,
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome","days":1}' } }] },
        { role: "tool", tool_call_id: "call_1", content: "sunny" },
      ],
    });
    assert.ok(r.usage!.prompt_tokens > 0);
  });
});
