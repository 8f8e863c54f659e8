import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { NanoClient, SESSION_HEADER } from "nanollm/dist/client/NanoClient.js";
import { rejectsWith } from "./helpers/assertions.js";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { eosEagerModel, tempDir, tinyModel } from "./helpers/fixtures.js";
import { httpBase, postJson } from "./helpers/http.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("affinity: the client names the session of every call, so a balancer can hash it", () => {
  // An HTTP/2 server that records each gRPC call's path and session metadata and refuses it.
  const seen: { path: string; session: string | undefined }[] = [];
  let recorder: http2.Http2Server;
  let client: NanoClient;
  before(async () => {
    recorder = http2.createServer();
    recorder.on("stream", (stream, headers) => {
      const session = headers[SESSION_HEADER];
      seen.push({ path: String(headers[":path"]), session: Array.isArray(session) ? session[0] : session });
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": "recorded" }, { endStream: true });
      stream.on("error", () => {});
    });
    await new Promise<void>((resolve) => recorder.listen(0, "127.0.0.1", resolve));
    client = new NanoClient(`127.0.0.1:${(recorder.address() as AddressInfo).port}`);
  });
  after(() => {
    client.close();
    recorder.close();
  });

  it("every session-scoped call carries x-nanollm-session; a new session's id is the client's before the call", async () => {
    const calls: [string, () => Promise<unknown>][] = [
      ["GetSession", () => client.getSession("s-get")],
      ["ResetSession", () => client.resetSession("s-reset")],
      ["UpdateSession", () => client.updateSession("s-update", { systemPrompt: "x" })],
      ["TruncateSession", () => client.truncateSession("s-truncate", 0)],
      ["DeleteSession", () => client.deleteSession("s-delete")],
      ["Chat", () => turn(client, "s-chat", "hi")],
      ["CreateSession", () => client.createSession({ sessionId: "s-create" })],
      ["CreateSession", () => client.createSession({})],
      ["ListSessions", () => client.listSessions()],
    ];
    for (const [, call] of calls) await assert.rejects(call());
    const byMethod = seen.map((s) => [s.path.split("/").at(-1), s.session]);
    assert.deepEqual(byMethod.slice(0, 7), [
      ["GetSession", "s-get"],
      ["ResetSession", "s-reset"],
      ["UpdateSession", "s-update"],
      ["TruncateSession", "s-truncate"],
      ["DeleteSession", "s-delete"],
      ["Chat", "s-chat"],
      ["CreateSession", "s-create"],
    ]);
    assert.equal(byMethod[7]?.[0], "CreateSession");
    assert.match(String(byMethod[7]?.[1]), UUID, "a session created without an id is named by a UUID the client picked");
    assert.deepEqual(byMethod[8], ["ListSessions", undefined], "a call of no one session carries none");
  });
});

describe("the client sends a call again only when no daemon answered it", () => {
  // Answers the first call as `first` says and later ones with UNIMPLEMENTED; counts them.
  async function server(first: "trailers-only" | "answered") {
    let calls = 0;
    const srv = http2.createServer();
    srv.on("stream", (stream) => {
      stream.on("error", () => {});
      if (++calls > 1) return stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": "recorded" }, { endStream: true });
      if (first === "trailers-only") return stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "14", "grpc-message": "no daemon answered" }, { endStream: true });
      // A daemon's answer: headers, then the failure in the trailers.
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "14", "grpc-message": "the daemon went away" }));
      stream.end();
    });
    await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
    const client = new NanoClient(`127.0.0.1:${(srv.address() as AddressInfo).port}`);
    return { client, calls: () => calls, close: () => (client.close(), srv.close()) };
  }

  it("a turn or a read the balancer could not place (UNAVAILABLE, no response) goes again and reaches a daemon", async () => {
    for (const call of [(c: NanoClient) => turn(c, "s", "hi"), (c: NanoClient) => c.getSession("s"), (c: NanoClient) => c.listModels()]) {
      const s = await server("trailers-only");
      await assert.rejects(call(s.client), /recorded/, "the second attempt's answer is the one the caller gets");
      assert.equal(s.calls(), 2);
      s.close();
    }
  });

  it("a call a daemon answered, or one that changes a session, is not sent again", async () => {
    const answered = await server("answered");
    await rejectsWith(turn(answered.client, "s", "hi"), "UNAVAILABLE", /the daemon went away/);
    assert.equal(answered.calls(), 1, "a turn that reached a daemon never runs twice");
    answered.close();
    const refused = await server("trailers-only");
    await assert.rejects(refused.client.truncateSession("s", "last exchange"), /no daemon answered/);
    assert.equal(refused.calls(), 1, "dropping the last exchange twice would drop two");
    refused.close();
  });
});

describe("a call reset mid-way by a balancer (its daemon died) fails in one sentence", () => {
  it("nginx's reset (INTERNAL_ERROR) and HAProxy's (CANCEL) both say the connection broke and to send it again", async () => {
    for (const code of [http2.constants.NGHTTP2_INTERNAL_ERROR, http2.constants.NGHTTP2_CANCEL]) {
      const srv = http2.createServer();
      srv.on("stream", (stream) => {
        stream.on("error", () => {});
        stream.respond({ ":status": 200, "content-type": "application/grpc" });
        stream.close(code);
      });
      await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
      const client = new NanoClient(`127.0.0.1:${(srv.address() as AddressInfo).port}`);
      try {
        await rejectsWith(turn(client, "s", "hi"), "UNAVAILABLE", /^The connection to the daemon behind 127\.0\.0\.1:\d+ broke before the call ended \(the daemon may have stopped\); send it again\.$/);
      } finally {
        client.close();
        srv.close();
      }
    }
  });
});

describe("CreateSession takes the client's id", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 256 });
  });
  after(() => d.stop());

  it("the session is created under the id the client chose, and its turns find it", async () => {
    const s = await d.client.createSession({ chatTemplate: "chat-ml", sessionId: "team-a_session-1" });
    assert.equal(s.sessionId, "team-a_session-1");
    const t = await turn(d.client, "team-a_session-1", "hello", 4);
    assert.equal((await d.client.getSession("team-a_session-1", true)).history.at(-1)?.text, t.text);
  });

  it("without an id, the session gets the UUID the client picked", async () => {
    assert.match((await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId, UUID);
  });

  it("an id in use or not a safe name is refused in one sentence", async () => {
    await d.client.createSession({ chatTemplate: "chat-ml", sessionId: "taken" });
    await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml", sessionId: "taken" }), "FAILED_PRECONDITION", /^Session taken exists already; use it or pick another id\.$/);
    await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml", sessionId: "../etc/passwd" }), "INVALID_ARGUMENT", /^A session id must be 1 to 128 letters, digits, '_' or '-'; fix it or leave it empty for a new UUID\.$/);
    await rejectsWith(d.client.createSession({ chatTemplate: "chat-ml", sessionId: "x".repeat(129) }), "INVALID_ARGUMENT", /must be 1 to 128 letters/);
  });

  it("the HTTP APIs' X-Nanollm-Session names the same sessions, with the same rule for ids", async () => {
    const h = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 256, http: {} });
    try {
      const url = `${httpBase(h)}/v1/chat/completions`;
      const body = { model: "tiny-chatml", messages: [{ role: "user", content: "hello" }], max_tokens: 4 };
      assert.equal((await postJson(url, body, { "x-nanollm-session": "pinned_by-http" })).status, 200);
      assert.equal((await h.client.getSession("pinned_by-http", true)).history.length, 2, "a gRPC client finds the session the header named");
      const bad = await postJson(url, body, { "x-nanollm-session": "has.a.dot" });
      assert.equal(bad.status, 400);
      assert.match(bad.text, /The X-Nanollm-Session header must be 1 to 128 letters, digits, '_' or '-' \(a session id, as gRPC clients name them\); fix it or leave it out\./);
    } finally {
      await h.stop();
    }
  });

  it("an id a journaled session of another model has (on disk, not loaded) is refused, and that session kept", async () => {
    const dataDir = tempDir("affinity-ids");
    const other = await inProcessDaemon(eosEagerModel(), { parallel: 1, ctx: 256, dataDir });
    await other.client.createSession({ chatTemplate: "chat-ml", systemPrompt: "kept", sessionId: "named-session" });
    await other.stop();
    const file = path.join(dataDir, "sessions", "named-session.json");
    const before = fs.readFileSync(file, "utf8");
    const here = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 256, dataDir });
    try {
      await rejectsWith(here.client.createSession({ chatTemplate: "chat-ml", sessionId: "named-session" }), "FAILED_PRECONDITION", /^Session named-session exists already; use it or pick another id\.$/);
      assert.equal(fs.readFileSync(file, "utf8"), before, "the other model's session is untouched");
    } finally {
      await here.stop();
    }
  });
});
