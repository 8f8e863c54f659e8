import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, SessionServiceClient } from "@nanollm/shared";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { assertKeptChatting, startChatter } from "./helpers/chatter.js";
import { inProcessDaemon, turn, type TestDaemon } from "./helpers/daemon.js";
import { tinyModel } from "./helpers/fixtures.js";
import { rejectsWith } from "./helpers/assertions.js";

/** A Chat call over raw HTTP/2 with a 1 KiB window that never reads what the daemon sends. */
function deafChat(address: string, sessionId: string) {
  const session = http2.connect(`http://${address}`, { settings: { initialWindowSize: 1024 } });
  session.on("error", () => undefined);
  const stream = session.request({ ":method": "POST", ":path": "/nanollm.v1.ChatService/Chat", "content-type": "application/grpc", te: "trailers" });
  stream.on("error", () => undefined);
  const body = Buffer.from(ChatRequest.encode({ kind: { $case: "userTurn", userTurn: { sessionId, text: "Write forever", turnId: "deaf", params: { maxNewTokens: 30000 }, images: [] } } }).finish());
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, 5);
  stream.write(frame);
  stream.pause();
  const closed = new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode ?? 0)));
  return { closed, close: () => session.destroy() };
}

describe("slow readers and connection floods", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { parallel: 2, ctx: 1024 * 40, daemon: { writeTimeoutMs: 1000, maxConnections: 40, maxStreams: 8, idleTimeoutMs: 2000 } });
  });
  after(() => d.stop());

  it("item 4: Chat streams that stop reading have their turns cancelled after the write timeout, freeing their sequences for others", async () => {
    const started = performance.now();
    const deaf = await Promise.all([0, 1].map(async () => deafChat(d.address, (await d.client.createSession({ chatTemplate: "chat-ml" })).sessionId)));
    // Both sequences are held by the deaf streams; another client's turn waits for one.
    const chatter = await startChatter(d.address);
    const rst = await Promise.all(deaf.map((x) => x.closed));
    const freedAfter = performance.now() - started;
    await new Promise((r) => setTimeout(r, 1000));
    const report = await chatter.stop();
    deaf.forEach((x) => x.close());
    console.log(`# deaf streams closed after ${freedAfter.toFixed(0)} ms (codes ${rst.join(", ")}); other client ${report.turns} turns, slowest ${report.slowestMs.toFixed(0)} ms`);
    assert.ok(freedAfter < 30_000, `the deaf streams were closed after ${freedAfter.toFixed(0)} ms`);
    assertKeptChatting(report, 3, 30_000);
  });

  it("item 5: a connection flood is refused past the limit with a clear RESOURCE_EXHAUSTED while existing clients chat; idle connections close; streams per connection are bounded", async () => {
    const chatter = await startChatter(d.address);
    const [host, port] = [d.address.slice(0, d.address.lastIndexOf(":")), Number(d.address.slice(d.address.lastIndexOf(":") + 1))];
    const flood = await Promise.all(
      Array.from({ length: 100 }, () => new Promise<net.Socket>((resolve) => {
        const socket = net.connect({ host, port }, () => resolve(socket));
        socket.on("error", () => resolve(socket));
        // Read (and drop) what the daemon sends, so its close is seen.
        socket.resume();
      })),
    );
    await new Promise((r) => setTimeout(r, 200));
    // A client with a connection of its own (grpc-js shares connections between clients by default).
    const late = new SessionServiceClient(d.address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const refused = await new Promise<ServiceError | null>((resolve) => late.listSessions({}, (err) => resolve(err)));
    late.close();
    assert.equal(refused?.code, status.RESOURCE_EXHAUSTED, String(refused));
    assert.match(refused.details, /already serves 40 connections, its limit \(NANOLLM_MAX_CONNECTIONS\); close idle clients/);
    const during = await chatter.stop();
    // Connections that never start HTTP/2 are closed by the daemon: refused ones within 2 s, the
    // rest by the idle timeout (2 s here; those that send nothing at all also after 10 s).
    const floodStarted = performance.now();
    const gone = await Promise.race([
      Promise.all(flood.map((s) => (s.closed ? undefined : new Promise((r) => s.once("close", r))))).then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 15_000)),
    ]);
    assert.ok(gone, "the daemon closed every silent connection");
    console.log(`# silent connections closed by the daemon within ${(performance.now() - floodStarted).toFixed(0)} ms`);
    flood.forEach((s) => s.destroy());
    const again = new NanoClient(d.address);
    const s = await again.createSession({ chatTemplate: "chat-ml" });
    assert.equal((await turn(again, s.sessionId, "back?", 4)).ids.length, 4, "new clients are served once the flood is gone");
    again.close();
    assertKeptChatting(during, 1, 5000);

    const h2 = http2.connect(`http://${d.address}`);
    h2.on("error", () => undefined);
    await new Promise((r) => h2.once("remoteSettings", r));
    assert.equal(h2.remoteSettings.maxConcurrentStreams, 8, "MAX_CONCURRENT_STREAMS is announced");
    const idleStarted = performance.now();
    await new Promise((r) => h2.once("close", r));
    const idleMs = performance.now() - idleStarted;
    assert.ok(idleMs < 10_000, `an idle connection was closed after ${idleMs.toFixed(0)} ms`);
  });
});
