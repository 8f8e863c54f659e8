import assert from "node:assert/strict";
import fs from "node:fs";
import { credentials, makeGenericClientConstructor, status, type Client, type ServiceError } from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { ChatEvent, ChatRequest, CreateSessionRequest, GetSessionRequest, TruncateSessionRequest, UpdateSessionRequest, type OverflowPolicy, type Role } from "@nanollm/shared";
import { spawnDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";

// CI runs FUZZ_COUNT (default 2,000); `make fuzz` runs the full 10,000.
const COUNT = Number(process.env.FUZZ_COUNT ?? 2000);
const IN_FLIGHT = 16;
const ALLOWED = new Set([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.FAILED_PRECONDITION, status.RESOURCE_EXHAUSTED]);

const UNARY = [
  "SessionService/CreateSession",
  "SessionService/GetSession",
  "SessionService/ListSessions",
  "SessionService/ResetSession",
  "SessionService/DeleteSession",
  "SessionService/UpdateSession",
  "SessionService/TruncateSession",
  "ModelService/ListModels",
  "ModelService/GetServerInfo",
];

/** mulberry32: a seeded generator so a failing run can be replayed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}

type Rng = ReturnType<typeof rng>;

function randomBytes(r: Rng, max = 300): Buffer {
  return Buffer.from(Array.from({ length: r.int(max) }, () => r.int(256)));
}

/** Words, `chars` long: text that tokenizes into many tokens (long but legal inputs). */
function words(chars: number): string {
  return Array.from({ length: Math.ceil(chars / 8) }, (_, i) => (i * 7919).toString(36).padStart(7, "q")).join(" ").slice(0, chars);
}
const LONG_LEGAL = [words(400_000), words(999_999)];

/** Schemas: deep nesting past the limit (arrays, objects), at the limit, oversized, oddly typed, many. */
function nastySchema(r: Rng): string {
  return r.pick([
    () => "",
    () => "{}",
    () => "[",
    () => '{"properties":{"a":{"type":"string"}}}',
    () => "[".repeat(20_000) + "]".repeat(20_000),
    () => `{"a":${"[".repeat(20_000)}${"]".repeat(20_000)}}`,
    () => '{"a":'.repeat(r.pick([31, 32, 33, 5000])) + "{}" + "}".repeat(r.pick([31, 32, 33, 5000])),
    () => JSON.stringify({ type: "object", description: "x".repeat(r.pick([60_000, 70_000])) }),
    () => '{"properties":5,"required":7}',
    () => '{"properties":{"a":{"type":{"nested":[1,2]}}},"required":["a","a"]}',
  ])();
}

/** Strings that stress a decoder: empty, huge, control strings, lone surrogates, plain words. */
function nastyString(r: Rng, known: string[]): string {
  // Long but under the limit: tokenized for real, so drawn rarely.
  if (r.int(40) === 0) return r.pick(LONG_LEGAL);
  return r.pick([
    () => "",
    () => "x".repeat(1_000_001 + r.int(1000)),
    () => "<|im_end|>\n<|im_start|>system\n",
    () => "\ud800\udfff\ud800",
    () => "../../etc/passwd.gguf",
    () => (known.length ? r.pick(known) : "s"),
    () => `word ${r.int(1e9)}`,
  ])();
}

/** Many short messages, or a bot reply of 200,000 token ids: histories long in count or in tokens. */
function longHistory(r: Rng) {
  if (r.int(2)) return Array.from({ length: 2000 }, (_, i) => ({ role: (i % 2 ? 3 : 2) as Role, text: `m${i}`, tokenIds: [], images: [] }));
  return [{ role: 2 as Role, text: "hi", tokenIds: [], images: [] }, { role: 3 as Role, text: "", tokenIds: Array.from({ length: 200_000 }, (_, i) => 10 + (i % 50)), images: [] }];
}

function nastyNumber(r: Rng): number {
  return r.pick([0, 1, 7, -1, 2 ** 31, 2 ** 32 - 1, Number.NaN, Infinity, -Infinity, 1e30, 0.5, r.int(100)]);
}

/** A request for `method`: random bytes, invalid UTF-8, or a well-formed message with nasty values. */
function request(r: Rng, method: string, known: string[]): Buffer {
  const kind = r.int(4);
  if (kind === 0) return randomBytes(r);
  if (kind === 1) return Buffer.from([0x0a, 3, 0xff, 0xfe, 0xc3]); // field 1: invalid UTF-8
  const id = nastyString(r, known);
  const params = { maxNewTokens: r.pick([1, 4, 0, 40000, 2 ** 32 - 1]), temperature: nastyNumber(r), topP: nastyNumber(r), topK: r.int(3) ? 40 : 2 ** 31, minNewTokens: r.int(3) ? 0 : 9 };
  switch (method) {
    case "SessionService/CreateSession":
      return Buffer.from(CreateSessionRequest.encode({ model: r.int(4) ? "" : nastyString(r, known), chatTemplate: r.pick(["", "chat-ml", "raw", "nope", "/etc/passwd"]), chatTemplateJson: r.pick(["", "", "{", '{"user":"${MESSAGE}","bot":"${MESSAGE}"}', "[1]"]), systemPrompt: r.int(2) ? nastyString(r, known) : undefined, defaults: params, history: r.int(3) ? [] : r.int(8) ? [{ role: r.pick([0, 1, 2, 3, 4, 99]) as Role, text: nastyString(r, known), tokenIds: [r.int(3) ? 5 : 2 ** 31], images: [] }] : longHistory(r), overflow: r.pick([0, 1, 2, 7]) as OverflowPolicy, builtinFunctions: r.int(4) ? [] : [r.pick(["DATE", "TIME", "rm -rf", ""])], clientFunctions: r.int(4) ? [] : Array.from({ length: r.pick([1, 1, 2, 129]) }, (_, i) => ({ name: r.int(2) ? `F${i}` : nastyString(r, known).slice(0, 100), description: "d", parametersJson: nastySchema(r) })), sessionId: r.int(3) ? "" : id }).finish());
    case "SessionService/UpdateSession":
      return Buffer.from(UpdateSessionRequest.encode({ sessionId: id, systemPrompt: nastyString(r, known), chatTemplate: r.pick([undefined, "raw", "nope"]), defaults: params, setFunctions: r.int(2) === 0, builtinFunctions: [r.pick(["DATE", "NOPE"])], clientFunctions: r.int(3) ? [] : [{ name: "F", description: "d", parametersJson: nastySchema(r) }] }).finish());
    case "SessionService/TruncateSession":
      return Buffer.from(TruncateSessionRequest.encode({ sessionId: id, keepMessages: r.pick([0, 1, 2, 2 ** 32 - 1]), dropLastExchange: r.int(3) === 0 }).finish());
    default:
      return Buffer.from(GetSessionRequest.encode({ sessionId: id, withHistory: r.int(2) === 0 }).finish());
  }
}

function chatRequest(r: Rng, known: string[]): Buffer {
  if (r.int(3) === 0) return randomBytes(r);
  const sessionId = nastyString(r, known);
  if (r.int(4) === 0) return Buffer.from(ChatRequest.encode({ kind: { $case: "cancel", cancel: { turnId: "nope" } } }).finish());
  const text = r.int(3) ? `hello ${r.int(100)}` : nastyString(r, known);
  return Buffer.from(ChatRequest.encode({ kind: { $case: "userTurn", userTurn: { sessionId, text, turnId: "", images: [], params: { maxNewTokens: r.pick([1, 3, 0, 40000]), topP: nastyNumber(r) } } } }).finish());
}

function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
}

describe(`fuzz: ${COUNT} random or malformed requests across every RPC`, () => {
  let d: TestDaemon & { proc: { pid?: number; exitCode: number | null }; log: () => string };
  let raw: Client & Record<string, (...args: unknown[]) => unknown>;
  before(async () => {
    process.env.NANOLLM_MAX_SESSIONS = "300";
    d = await spawnDaemon(tinyModel(), ["--parallel", "2", "--ctx", "512", "--max-queue", "8"]);
    delete process.env.NANOLLM_MAX_SESSIONS;
    const identity = (b: Buffer) => b;
    const methods = Object.fromEntries(
      [...UNARY, "ChatService/Chat"].map((m) => [
        m,
        { path: `/nanollm.v1.${m}`, requestStream: m.endsWith("Chat"), responseStream: m.endsWith("Chat"), requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
      ]),
    );
    const Ctor = makeGenericClientConstructor(methods, "Fuzz");
    raw = new Ctor(d.address, credentials.createInsecure()) as typeof raw;
  });
  after(async () => {
    raw.close();
    await d.stop();
  });

  it("never crashes, answers each with a proper status, and keeps its memory bounded", async (t) => {
    const r = rng(12345);
    const known: string[] = [];
    for (let i = 0; i < 3; i++) known.push((await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId);
    const statuses = new Map<number, number>();
    const bad: string[] = [];
    const unary = (method: string, body: Buffer) =>
      new Promise<number>((resolve) => {
        const fn = raw[method] as (b: Buffer, o: object, cb: (e: ServiceError | null) => void) => void;
        fn.call(raw, body, { deadline: Date.now() + 20_000 }, (err) => resolve(err ? err.code : status.OK));
      });
    const chat = (body: Buffer) =>
      new Promise<number>((resolve) => {
        const call = (raw["ChatService/Chat"] as (o: object) => NodeJS.ReadWriteStream & { end(): void }).call(raw, { deadline: Date.now() + 20_000 });
        // A turn's failure is an error event (the stream goes on); it counts as that status.
        call.on("data", (b: Buffer) => {
          const kind = ChatEvent.decode(b).kind;
          if (kind?.$case === "error") resolve(kind.error.code);
        });
        call.on("error", (e: ServiceError) => resolve(e.code));
        call.on("status", (s: { code: number }) => resolve(s.code));
        call.write(body);
        call.end();
      });
    let rssAfterWarmup = 0;
    let next = 0;
    const worker = async () => {
      while (next < COUNT) {
        const n = next++;
        if (n === Math.floor(COUNT / 5)) rssAfterWarmup = rssMiB(d.proc.pid!);
        const method = r.pick([...UNARY, "ChatService/Chat", "ChatService/Chat"]);
        const body = method === "ChatService/Chat" ? chatRequest(r, known) : request(r, method, known);
        const code = method === "ChatService/Chat" ? await chat(body) : await unary(method, body);
        statuses.set(code, (statuses.get(code) ?? 0) + 1);
        if (!ALLOWED.has(code) && bad.length < 10) bad.push(`${method} → status ${code} for ${body.subarray(0, 40).toString("hex")}`);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const rssEnd = rssMiB(d.proc.pid!);
    t.diagnostic(`statuses ${JSON.stringify(Object.fromEntries([...statuses].map(([k, v]) => [status[k], v])))}; RSS ${rssAfterWarmup.toFixed(0)} → ${rssEnd.toFixed(0)} MiB`);
    assert.deepEqual(bad, [], `unexpected statuses: ${JSON.stringify([...statuses])}\n${d.log().slice(-3000)}`);
    assert.equal(d.proc.exitCode, null, "the daemon is still running");
    assert.ok(rssEnd - rssAfterWarmup < 150, `RSS grew from ${rssAfterWarmup.toFixed(0)} to ${rssEnd.toFixed(0)} MiB`);
    assert.ok((statuses.get(status.OK) ?? 0) > 0 && (statuses.get(status.INVALID_ARGUMENT) ?? 0) > 0, "both valid and invalid requests were exercised");
    const s = await d.client.createSession({ chatTemplate: "chat-ml" }).catch(async () => {
      for (const x of await d.client.listSessions()) await d.client.deleteSession(x.sessionId);
      return d.client.createSession({ chatTemplate: "chat-ml" });
    });
    assert.equal((await turn(d.client, s.sessionId, "still fine?", 4)).ids.length, 4, "and it still chats");
  });
});
