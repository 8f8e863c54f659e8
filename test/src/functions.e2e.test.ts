import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ChatEvent, type FunctionDecl, type GenerationParams } from "@nanollm/shared";
import { parseCall } from "@nanollm/daemon/dist/functions/parseCall.js";
import type { FunctionHandler } from "nanollm/dist/client/NanoClient.js";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel, toolEagerModel } from "./helpers/fixtures.js";
import { assertNextTurnMatchesReplay } from "./helpers/replay.js";

const WEATHER: FunctionDecl = {
  name: "WEATHER",
  description: "Returns the weather of a city.",
  parametersJson: JSON.stringify({ type: "object", properties: { city: { type: "string" }, days: { type: "integer" } }, required: ["city"] }),
};
const DATE_TEXT = /^(Sunday|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday), [A-Z][a-z]+ \d{1,2} \d{4}$/;

/** GBNF that makes the model write exactly `text` and then end. */
const exactly = (text: string) => `root ::= ${JSON.stringify(text)}`;

/** Runs a turn collecting every event; client-side calls go to `handler`. */
async function run(d: TestDaemon, sessionId: string, text: string, params: GenerationParams, handler?: FunctionHandler) {
  const events: ChatEvent[] = [];
  for await (const ev of d.client.turn(sessionId, text, params, undefined, handler)) events.push(ev);
  const of = <K extends NonNullable<ChatEvent["kind"]>["$case"]>(k: K) => events.flatMap((e) => (e.kind?.$case === k ? [e.kind as Extract<NonNullable<ChatEvent["kind"]>, { $case: K }>] : []));
  const end = of("end")[0]!.end;
  return { events, calls: of("functionCall").map((c) => c.functionCall), results: of("functionResult").map((r) => r.functionResult), end, text: of("text").map((t) => t.text.text).join("") };
}

/** The next greedy reply equals a fresh session's given the same transcript, and nothing is re-evaluated. */
async function assertCacheMatchesTranscript(d: TestDaemon, sessionId: string, extra: Partial<Parameters<TestDaemon["client"]["createSession"]>[0]>) {
  const { info, next } = await assertNextTurnMatchesReplay(d.client, sessionId, "And then?", 8, { chatTemplate: "chat-ml", ...extra });
  assert.equal(next.end.stats!.reusedTokens, info.contextUsed, "the cache holds exactly the rendered transcript");
}

describe("the strict call parser", () => {
  it("reads literal arguments, positional and keyword", () => {
    assert.deepEqual(parseCall(`WEATHER("Paris (FR)", days=2, metric=True, note=None, x='a\\'b')`), {
      name: "WEATHER",
      args: ["Paris (FR)"],
      kwargs: { days: 2, metric: true, note: null, x: "a'b" },
    });
    assert.deepEqual(parseCall("DATE()"), { name: "DATE", args: [], kwargs: {} });
  });

  it("refuses anything that is not a literal", () => {
    for (const code of ["__import__('os').system('x')", "constructor.constructor('return process')()", "DATE() + 1", "F(x)", "F(1, a=2, 3)", "F(a=1, a=2)", "F(`x`)", "F(1"]) {
      assert.throws(() => parseCall(code), SyntaxError, code);
    }
  });
});

describe("function calling on the real engine", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { functionTimeoutMs: 300 });
  });
  after(() => d.stop());

  it("calls the DATE built-in mid-reply, inserts its result, and the cache equals a fresh evaluation", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", builtinFunctions: ["DATE"] });
    const info = await d.client.getSession(s.sessionId, true);
    assert.match(info.functions.map((f) => f.name).join(), /DATE/);
    const r = await run(d, s.sessionId, "What day is it?", { grammar: exactly("Today is DATE()"), maxNewTokens: 40 });
    assert.deepEqual(r.calls.map((c) => [c.name, c.clientSide]), [["DATE", false]]);
    assert.match(r.results[0]!.result, DATE_TEXT);
    assert.equal(r.end.reply, `Today is DATE()${r.results[0]!.result}`, "the result was added to the reply");
    assert.equal(r.text, r.end.reply);
    await assertCacheMatchesTranscript(d, s.sessionId, { builtinFunctions: ["DATE"] });
  });

  it("calls a client-side function over the Chat stream and resumes with its answer", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
    const seen: string[] = [];
    const r = await run(d, s.sessionId, "Weather?", { grammar: exactly(`WEATHER("Paris", days=2) says`), maxNewTokens: 40 }, async (call) => {
      seen.push(call.argumentsJson);
      return { result: " sunny", isError: false };
    });
    assert.deepEqual(seen, ['{"city":"Paris","days":2}']);
    assert.equal(r.calls[0]!.clientSide, true);
    assert.ok(r.end.reply.startsWith(`WEATHER("Paris", days=2) sunny`), r.end.reply);
    await assertCacheMatchesTranscript(d, s.sessionId, { clientFunctions: [WEATHER] });
  });

  it("enters a result longer than a decode batch (256 tokens) into the cache intact", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
    const long = " sunny, then" + " rain and wind, then sun".repeat(30);
    const r = await run(d, s.sessionId, "Weather?", { grammar: exactly(`WEATHER("Oslo") says`), maxNewTokens: 40 }, async () => ({ result: long, isError: false }));
    assert.ok(r.end.reply.startsWith(`WEATHER("Oslo")${long}`), r.end.reply.slice(0, 80));
    assert.ok(r.end.stats!.generatedTokens > 300, `${r.end.stats!.generatedTokens} reply tokens, the result's included`);
    await assertCacheMatchesTranscript(d, s.sessionId, { clientFunctions: [WEATHER] });
  });

  it("documents the enabled functions in the system prompt like the reference's generate_docs()", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", builtinFunctions: ["DATE", "TIME"], systemPrompt: "Be kind." });
    const plain = await d.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "Be kind." });
    assert.ok(s.contextUsed > plain.contextUsed + 20, "the docs take room in the prompt");
  });

  const failures: [string, string, FunctionHandler | undefined, RegExp][] = [
    ["an unknown function", "FOO(1)", undefined, /there is no function FOO/],
    ["bad arguments", "WEATHER(city)", undefined, /bad arguments/],
    ["a wrong argument type", `WEATHER("Paris", days="two")`, undefined, /must be integer/],
    ["a function that throws", `WEATHER("Paris")`, async () => { throw new Error("boom"); }, /WEATHER threw: boom/],
    ["a client that never answers", `WEATHER("Paris")`, () => new Promise(() => {}), /did not answer WEATHER within 0.3 s/],
  ];
  for (const [label, call, handler, error] of failures) {
    it(`reports ${label} to the model and the client, and the session goes on`, async () => {
      const s = await d.client.createSession({ chatTemplate: "chat-ml", clientFunctions: [WEATHER] });
      const r = await run(d, s.sessionId, "Go", { grammar: exactly(call), maxNewTokens: 60 }, handler);
      assert.equal(r.results.length, 1);
      assert.equal(r.results[0]!.isError, true);
      assert.match(r.results[0]!.result, error);
      assert.ok(r.end.reply.includes(`Error: ${r.results[0]!.result}`), "the model sees the error text");
      assert.equal((await turn(d.client, s.sessionId, "next", 4)).ids.length, 4);
    });
  }

  it("caps a model that keeps calling", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", builtinFunctions: ["TIME"] });
    const r = await run(d, s.sessionId, "Go", { grammar: exactly("TIME()".repeat(10)), maxNewTokens: 200 });
    assert.equal(r.results.length, 10);
    assert.deepEqual(r.results.map((x) => x.isError), [...Array(8).fill(false), true, true]);
    assert.match(r.results[8]!.result, /more than 8 function calls/);
  });

  it("runs a tool call a chat-ml-tools reply makes, answers with a tool response, and the bot turn resumes", async (t) => {
    const d = await inProcessDaemon(tinyModel(), { ctx: 4096 });
    t.after(() => d.stop());
    const s = await d.client.createSession({ chatTemplate: "chat-ml-tools", clientFunctions: [WEATHER] });
    const call = '<tool_call>{"name": "WEATHER", "arguments": {"city": "Oslo"}}</tool_call>';
    // The grammar makes every bot message of the turn this call, so the per-turn cap ends it.
    const r = await run(d, s.sessionId, "Weather in Oslo?", { grammar: exactly(call), maxNewTokens: 80 }, async (c) => ({ result: `cold in ${JSON.parse(c.argumentsJson).city}`, isError: false }));
    const n = r.calls.length;
    assert.equal(n, 8);
    assert.deepEqual(r.results.map((x) => x.result), Array(n).fill("cold in Oslo"));
    const info = await d.client.getSession(s.sessionId, true);
    const roles = info.history.map((m) => m.role);
    assert.deepEqual(roles.slice(0, 5), [2, 3, 4, 3, 4], "user, bot (call), tool (response), bot, tool ...");
    assert.equal(info.history[2]!.text, "cold in Oslo");
    assert.equal(info.history.length, 2 + 2 * n, "every call has its response, and the capped ninth call ends the turn");
    await assertCacheMatchesTranscript(d, s.sessionId, { chatTemplate: "chat-ml-tools", clientFunctions: [WEATHER] });
  });

  it("constrains a tool call's JSON to the function's schema once the model opens a call", async (t) => {
    // This model opens a tool call whenever it may; what follows is up to the grammar alone.
    const d = await inProcessDaemon(toolEagerModel(), { ctx: 4096 });
    t.after(() => d.stop());
    const strict: FunctionDecl = { ...WEATHER, parametersJson: JSON.stringify({ type: "object", properties: { city: { type: "string", maxLength: 8 }, days: { type: "integer" } }, required: ["city", "days"] }) };
    const s = await d.client.createSession({ chatTemplate: "chat-ml-tools", clientFunctions: [strict] });
    const r = await run(d, s.sessionId, "Weather?", { maxNewTokens: 120 }, async () => ({ result: "cold", isError: false }));
    assert.ok(r.calls.length >= 1);
    for (const call of r.calls) {
      const args = JSON.parse(call.argumentsJson) as { city: unknown; days: unknown };
      assert.equal(typeof args.city, "string");
      assert.ok((args.city as string).length <= 8);
      assert.ok(Number.isInteger(args.days));
    }
    assert.ok(r.results.every((x) => !x.isError), "every call was valid for the schema");
  });

  it("never runs code the model writes, and stays healthy", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", builtinFunctions: ["DATE"] });
    for (const attack of ["DATE(); process.exit(1)", "__import__('os').system('x')", "constructor.constructor('process.exit(1)')()"]) {
      const r = await run(d, s.sessionId, "Go", { grammar: exactly(attack), maxNewTokens: 80 });
      assert.deepEqual(r.calls.map((c) => c.name), attack.startsWith("DATE") ? ["DATE"] : [], attack);
      assert.ok(r.end.reply.includes(attack.slice(-10)), "the text is only text");
    }
    assert.ok((await d.client.serverInfo()).version, "the daemon still answers");
  });
});
