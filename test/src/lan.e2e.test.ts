// Two hosts on one machine: the daemon in one network namespace, clients in another, joined by a
// veth pair. Needs root (ip netns add); elsewhere the suite is skipped with the reason.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import type { ChildProcess } from "node:child_process";
import { waitForReady } from "@nanollm/shared";
import { CLI, nanollm } from "./helpers/daemon.js";
import { FIXTURE_DIR, tempDir, tinyModel } from "./helpers/fixtures.js";
import { makeLan, runIn, type Lan } from "./helpers/netns.js";
import type { Op, Outcome } from "./helpers/remoteCalls.js";

const REMOTE_CALLS = fileURLToPath(new URL("./helpers/remoteCalls.js", import.meta.url));
const lan = makeLan();

describe("over a LAN (two network namespaces)", { skip: typeof lan === "string" ? lan : false }, () => {
  const net = lan as Lan;
  const dir = tempDir("lan");
  const certs = path.join(dir, "certs");
  const otherCerts = path.join(dir, "other-certs");
  const data = path.join(dir, "data");
  const daemons: ChildProcess[] = [];
  const tokens: Record<string, string> = {};
  const tlsHost = `${net.server.address}:7433`;
  const mtlsHost = `${net.server.address}:7434`;
  const ca = path.join(certs, "ca.pem");

  /** `nanollm serve ARGS` in the server namespace; resolves with its log once it listens. */
  const serve = async (args: string[]): Promise<{ proc: ChildProcess; log: () => string }> => {
    const proc = net.node(net.server.ns, [CLI, "serve", "--model", tinyModel(), "--threads", "1", "--batch-threads", "1", "--gpu", "cpu", "--ctx", "512", ...args], { NANOLLM_MODELS_DIR: FIXTURE_DIR });
    daemons.push(proc);
    const { output } = await waitForReady(proc);
    return { proc, log: output };
  };

  /** Runs client calls from the client namespace. */
  const remote = async (host: string, conn: Record<string, string>, ops: Op[]): Promise<Outcome[]> => {
    const r = await runIn(net, net.client.ns, [REMOTE_CALLS, JSON.stringify({ host, conn, ops })]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Outcome[];
  };
  const as = (name: string) => ({ tlsCa: ca, token: tokens[name]! });

  before(async () => {
    const made = await nanollm(["certs", "init", certs, "--name", net.server.address, "--client", "alice", "--client", "root:admin"]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal((await nanollm(["certs", "init", otherCerts, "--name", net.server.address, "--client", "mallory"])).code, 0);
    for (const [name, admin] of [["alice", false], ["bob", false], ["root", true]] as const) {
      const r = await nanollm(["tokens", "add", name, ...(admin ? ["--admin"] : []), "--data-dir", data]);
      assert.equal(r.code, 0, r.stderr);
      tokens[name] = r.stdout.trim();
    }
    await serve(["--listen", tlsHost, "--tls-cert", path.join(certs, "server.pem"), "--tls-key", path.join(certs, "server-key.pem"), "--data-dir", data, "--advertise"]);
  });
  after(async () => {
    for (const proc of daemons) if (proc.exitCode === null) proc.kill("SIGTERM");
    await Promise.all(daemons.map((p) => (p.exitCode === null ? new Promise((r) => p.once("exit", r)) : undefined)));
    net.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("TLS + token: a streamed turn from the other host works, and the CLI chats too", async () => {
    const [created] = await remote(tlsHost, as("alice"), [{ op: "create" }]);
    assert.ok(created!.ok, created!.message);
    const [chat, info] = await remote(tlsHost, as("alice"), [{ op: "chat", sessionId: created!.value as string, text: "Hello there" }, { op: "info" }]);
    assert.ok(chat!.ok, chat!.message);
    const end = chat!.value as { reply: string; textEvents: number; generated: number };
    assert.equal(end.generated, 8);
    assert.ok(end.textEvents >= 1 && end.reply.length > 0);
    const server = info!.value as { identity: string; tls: boolean; auth: boolean; insecure: boolean };
    assert.deepEqual([server.identity, server.tls, server.auth, server.insecure], ["alice", true, true, false]);
    const cli = await runIn(net, net.client.ns, [CLI, "chat", "--host", tlsHost, "--tls-ca", ca, "--chat-template", "chat-ml", "--prompt", "Hi", "--max-new-tokens", "4"], { NANOLLM_TOKEN: tokens.bob });
    assert.equal(cli.code, 0, cli.stderr);
    assert.ok(cli.stdout.trim().length > 0);
  });

  it("a missing or wrong token is UNAUTHENTICATED with one sentence", async () => {
    const [missing] = await remote(tlsHost, { tlsCa: ca }, [{ op: "list" }]);
    assert.equal(missing!.code, "UNAUTHENTICATED");
    assert.match(missing!.message!, /^This daemon requires a token: pass --token/);
    const [wrong, malformed] = await remote(tlsHost, { tlsCa: ca, token: `${tokens.alice!.slice(0, -2)}xx` }, [{ op: "list" }, { op: "info" }]);
    assert.equal(wrong!.code, "UNAUTHENTICATED");
    assert.match(wrong!.message!, /did not accept this token/);
    assert.equal(malformed!.code, "UNAUTHENTICATED");
  });

  it("a plaintext client against the TLS port fails at once with a sentence that says to pass --tls-ca", async () => {
    const [plain] = await remote(tlsHost, { token: tokens.alice! }, [{ op: "info" }]);
    assert.equal(plain!.code, "UNAVAILABLE");
    assert.match(plain!.message!, /Could not talk to a daemon at 10\.213\.7\.1:7433 .*pass --tls-ca/);
    assert.ok(plain!.ms < 10_000, `failed after ${plain!.ms} ms`);
    const [untrusted] = await remote(tlsHost, { tlsCa: path.join(otherCerts, "ca.pem"), token: tokens.alice! }, [{ op: "info" }]);
    assert.equal(untrusted!.code, "UNAVAILABLE");
    assert.match(untrusted!.message!, /TLS handshake with .* failed/);
  });

  it("identity B gets NOT_FOUND for A's session in every call, including listing; an admin sees and manages it", async () => {
    const [created] = await remote(tlsHost, as("alice"), [{ op: "create" }]);
    const id = created!.value as string;
    const asBob = await remote(tlsHost, as("bob"), [
      { op: "get", sessionId: id },
      { op: "chat", sessionId: id, text: "hi" },
      { op: "reset", sessionId: id },
      { op: "delete", sessionId: id },
      { op: "list" },
    ]);
    for (const [i, outcome] of asBob.slice(0, 4).entries()) {
      assert.equal(outcome.code, "NOT_FOUND", `call ${i}: ${JSON.stringify(outcome)}`);
      assert.match(outcome.message!, new RegExp(`There is no session "${id}"`));
    }
    assert.ok(!(asBob[4]!.value as string[]).includes(id), "bob's list leaves alice's session out");
    const [aliceList] = await remote(tlsHost, as("alice"), [{ op: "list" }]);
    assert.ok((aliceList!.value as string[]).includes(id));
    const [rootList, rootGet, rootDelete] = await remote(tlsHost, as("root"), [{ op: "list" }, { op: "get", sessionId: id }, { op: "delete", sessionId: id }]);
    assert.ok((rootList!.value as string[]).includes(id));
    assert.ok(rootGet!.ok && rootDelete!.ok, JSON.stringify([rootGet, rootDelete]));
  });

  it("a remote client names models from the models folder; a path needs an admin", async () => {
    const [byName, byPath] = await remote(tlsHost, as("alice"), [{ op: "create", model: "tiny-eos-eager" }, { op: "create", model: path.join(FIXTURE_DIR, "tiny-eos-eager.gguf") }]);
    assert.ok(byName!.ok, byName!.message);
    assert.equal(byPath!.code, "PERMISSION_DENIED");
    assert.match(byPath!.message!, /Only an admin or a client on the daemon's host may load a model by path/);
    const [adminPath] = await remote(tlsHost, as("root"), [{ op: "create", model: path.join(FIXTURE_DIR, "tiny-eos-eager.gguf") }]);
    assert.ok(adminPath!.ok, adminPath!.message);
  });

  it("mutual TLS: a client certificate from the CA is the identity; one from another CA is refused", async () => {
    const mtlsData = path.join(dir, "mtls-data");
    await serve(["--listen", mtlsHost, "--tls-cert", path.join(certs, "server.pem"), "--tls-key", path.join(certs, "server-key.pem"), "--tls-client-ca", ca, "--data-dir", mtlsData]);
    const cert = (dirName: string, name: string) => ({ tlsCa: ca, tlsCert: path.join(dirName, `client-${name}.pem`), tlsKey: path.join(dirName, `client-${name}-key.pem`) });
    const [alice] = await remote(mtlsHost, cert(certs, "alice"), [{ op: "info" }]);
    assert.ok(alice!.ok, alice!.message);
    assert.deepEqual([(alice!.value as { identity: string }).identity, (alice!.value as { admin: boolean }).admin], ["alice", false]);
    const [root] = await remote(mtlsHost, cert(certs, "root"), [{ op: "info" }]);
    assert.equal((root!.value as { admin: boolean }).admin, true);
    const [mallory] = await remote(mtlsHost, cert(otherCerts, "mallory"), [{ op: "info" }]);
    assert.equal(mallory!.code, "UNAVAILABLE", JSON.stringify(mallory));
    const [none] = await remote(mtlsHost, { tlsCa: ca }, [{ op: "info" }]);
    assert.equal(none!.code, "UNAVAILABLE", JSON.stringify(none));
  });

  it("serve on the LAN address without TLS and authentication refuses to start", async () => {
    const bare = await runIn(net, net.server.ns, [CLI, "serve", "--model", tinyModel(), "--listen", `${net.server.address}:7435`, "--gpu", "cpu", "--data-dir", path.join(dir, "bare")]);
    assert.equal(bare.code, 1);
    assert.match(bare.stderr, /^nanollm: Refusing to serve 10\.213\.7\.1:7435 without TLS and authentication: .* or pass --insecure/m);
    const tlsOnly = await runIn(net, net.server.ns, [CLI, "serve", "--model", tinyModel(), "--listen", `${net.server.address}:7435`, "--gpu", "cpu", "--data-dir", path.join(dir, "bare"), "--tls-cert", path.join(certs, "server.pem"), "--tls-key", path.join(certs, "server-key.pem")]);
    assert.equal(tlsOnly.code, 1);
    assert.match(tlsOnly.stderr, /Refusing to serve .* without authentication/);
  });

  it("the other host discovers the daemon (mDNS) and chats with --host auto", async () => {
    const found = await runIn(net, net.client.ns, [CLI, "discover", "--wait", "3000"]);
    assert.equal(found.code, 0, found.stderr);
    assert.match(found.stdout, /^10\.213\.7\.1:7433 {2}nanollm on .* {2}model tiny-chatml {2}TLS {2}auth/m);
    const auto = await runIn(net, net.client.ns, [CLI, "chat", "--host", "auto", "--tls-ca", ca, "--token", tokens.alice!, "--chat-template", "chat-ml", "--prompt", "Hi", "--max-new-tokens", "4"]);
    assert.equal(auto.code, 0, auto.stderr);
    assert.match(auto.stderr, /using nanollm on .* at 10\.213\.7\.1:7433/);
  });
});
