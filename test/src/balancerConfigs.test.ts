import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { addStandardServices, setHealth } from "@nanollm/daemon/dist/rpc/standard.js";
import { inProcessDaemon, type TestDaemon } from "./helpers/daemon.js";
import { DOCKER_DIR, ensureBalancer, renderHaproxy, renderNginx, startBalancer, type Backend } from "./helpers/balancers.js";
import { freePort } from "./helpers/ports.js";
import { waitFor } from "./helpers/poll.js";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { rejectsWith } from "./helpers/assertions.js";
import { tempDir, tinyModel } from "./helpers/fixtures.js";

const HAPROXY = fs.readFileSync(path.join(DOCKER_DIR, "haproxy.cfg"), "utf8");
const NGINX = fs.readFileSync(path.join(DOCKER_DIR, "nginx.conf"), "utf8");
const BACKENDS: Backend[] = [
  { grpcPort: 17001, httpPort: 17101 },
  { grpcPort: 17002, httpPort: 17102 },
];

/** The bytes HAProxy's health check sends, and the response bytes it waits for, as docker/haproxy.cfg has them. */
function haproxyCheck(): { send: Buffer; expect: Buffer } {
  const hex = (re: RegExp) => [...HAPROXY.matchAll(re)].map((m) => Buffer.from(m[1] ?? "", "hex"));
  const expect = hex(/^\s*tcp-check expect binary ([0-9a-f]+)$/gm);
  assert.equal(expect.length, 1);
  return { send: Buffer.concat(hex(/^\s*tcp-check send-binary ([0-9a-f]+)$/gm)), expect: expect[0] ?? Buffer.alloc(0) };
}

/** Sends `bytes` on a fresh connection and collects what comes back until `until` appears or a second passes. */
async function exchange(port: number, bytes: Buffer, until: Buffer): Promise<Buffer> {
  const socket = net.connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 1000);
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      if (Buffer.concat(chunks).includes(until)) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on("error", resolve).on("close", resolve);
    socket.write(bytes);
  });
  socket.destroy();
  return Buffer.concat(chunks);
}

/** SERVING and NOT_SERVING as the gRPC message of a HealthCheckResponse (field 1, varint). */
const SERVING = Buffer.from("00000000020801", "hex");
const NOT_SERVING = Buffer.from("00000000020802", "hex");

describe("HAProxy's health check speaks gRPC health over HTTP/2", () => {
  let d: TestDaemon;
  before(async () => {
    d = await inProcessDaemon(tinyModel(), { parallel: 1, ctx: 256 });
  });
  after(() => d.stop());

  it("its bytes are one HTTP/2 request: POST /grpc.health.v1.Health/Check with an empty HealthCheckRequest", async () => {
    const server = http2.createServer();
    const got = new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve) =>
      server.on("stream", (stream, headers) => {
        const body: Buffer[] = [];
        stream.on("data", (c: Buffer) => body.push(c));
        stream.on("end", () => {
          stream.respond({ ":status": 200 }, { endStream: true });
          resolve({ headers, body: Buffer.concat(body) });
        });
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      void exchange((server.address() as net.AddressInfo).port, haproxyCheck().send, Buffer.from("never"));
      const { headers, body } = await got;
      assert.equal(headers[":method"], "POST");
      assert.equal(headers[":path"], "/grpc.health.v1.Health/Check");
      assert.equal(headers["content-type"], "application/grpc");
      assert.equal(headers.te, "trailers");
      assert.deepEqual(body, Buffer.alloc(5), "one uncompressed gRPC message of length 0: a HealthCheckRequest for the whole server");
    } finally {
      server.close();
    }
  });

  it("a daemon answers it SERVING; a health service set NOT_SERVING (a daemon shutting down) does not match", async () => {
    const check = haproxyCheck();
    assert.deepEqual(check.expect, SERVING);
    assert.ok((await exchange(Number(d.address.split(":").at(-1)), check.send, check.expect)).includes(SERVING), "the daemon answers SERVING");

    // The daemon's own health wiring (rpc/standard.ts) in a bare server, switched as shutdown switches it.
    const server = new Server();
    const health = addStandardServices(server);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    try {
      setHealth(health, true);
      assert.ok((await exchange(port, check.send, check.expect)).includes(SERVING));
      setHealth(health, false);
      const answer = await exchange(port, check.send, NOT_SERVING);
      assert.ok(answer.includes(NOT_SERVING) && !answer.includes(SERVING), "NOT_SERVING fails the check");
    } finally {
      server.forceShutdown();
    }
  });
});

describe("the balancer configurations, rendered for loopback, pass nginx's and HAProxy's own checks", () => {
  it("nginx.conf: every daemon in both upstreams, hashed on x-nanollm-session, consistent", (t) => {
    const text = renderNginx(NGINX, { grpc: 17000, http: 17100 }, BACKENDS);
    assert.match(text, /listen 127\.0\.0\.1:17000 http2;/);
    assert.equal([...text.matchAll(/hash \$http_x_nanollm_session consistent;/g)].length, 2);
    assert.equal([...text.matchAll(/^\s*server 127\.0\.0\.1:1710[12] max_fails=1 fail_timeout=30s;$/gm)].length, 2);
    assert.equal([...text.matchAll(/^\s*server 127\.0\.0\.1:1700[12] max_fails=1 fail_timeout=30s;$/gm)].length, 2);
    assert.match(text, /grpc_pass grpc:\/\/nanollm_grpc;/);
    const found = ensureBalancer("nginx");
    if ("why" in found) return t.skip(found.why);
    const dir = tempDir("nginx-conf");
    fs.writeFileSync(path.join(dir, "nginx.conf"), text);
    // nginx opens /dev/stdout (the access log), which a pipe refuses: its stdout goes nowhere.
    const r = spawnSync(found.binary, ["-t", "-p", `${dir}/`, "-c", path.join(dir, "nginx.conf")], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"] });
    assert.equal(r.status, 0, r.stderr);
  });

  it("haproxy.cfg: HTTP/2 backends balanced on the header, consistent, health-checked; the HTTP backend tracks them", (t) => {
    const text = renderHaproxy(HAPROXY, { grpc: 17000, http: 17100 }, BACKENDS);
    assert.equal([...text.matchAll(/balance hdr\(x-nanollm-session\)\n\s*hash-type consistent/g)].length, 2);
    assert.match(text, /default-server proto h2 check /);
    assert.match(text, /^\s*server nanollm-1 127\.0\.0\.1:17002$/m);
    assert.match(text, /^\s*server nanollm-1 127\.0\.0\.1:17102 track nanollm_grpc\/nanollm-1$/m);
    assert.doesNotMatch(text, /nanollm-2/);
    const found = ensureBalancer("haproxy");
    if ("why" in found) return t.skip(found.why);
    const file = path.join(tempDir("haproxy-cfg"), "haproxy.cfg");
    fs.writeFileSync(file, text);
    const r = spawnSync(found.binary, ["-c", "-f", file], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr + r.stdout);
  });
});

describe("a balancer with no daemon to send a call to answers gRPC UNAVAILABLE, which the client tries again", () => {
  for (const kind of ["nginx", "haproxy"] as const) {
    it(`${kind}: no HTML error page, a retryable status; three attempts, then one sentence`, async (t) => {
      const found = ensureBalancer(kind);
      if ("why" in found) return t.skip(found.why);
      // A daemon that is gone: nothing listens on its ports.
      const lb = await startBalancer(kind, found.binary, [{ grpcPort: await freePort(), httpPort: await freePort() }]);
      const client = new NanoClient(lb.address);
      try {
        await rejectsWith(client.listModels(), "UNAVAILABLE", /^No daemon behind the balancer answered; try again, or check that the daemons are running\.$/);
        const attempts = kind === "nginx" ? /ListModels .* status=204/g : /nanollm_grpc\/\S+ .* 503 .*ListModels/g;
        // The balancer logs a call after answering it: the third line may come a moment after the client's error.
        const logged = () => [...lb.log().matchAll(attempts)].length;
        await waitFor(() => logged() >= 3, "the balancer's log of the third attempt").catch(() => undefined);
        assert.equal(logged(), 3, `the client sent ListModels three times:\n${lb.log()}`);
      } finally {
        client.close();
        await lb.stop();
      }
    });
  }
});

