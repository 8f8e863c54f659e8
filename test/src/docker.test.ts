import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { before, describe, it } from "node:test";
import { Copy, DockerfileParser } from "dockerfile-ast";
import { validate } from "dockerfile-utils";
import { parse, parseAllDocuments } from "yaml";
import { DOCKER_DIR } from "./helpers/balancers.js";
import { nanollm } from "./helpers/daemon.js";

// No Docker engine or kubectl here: the images, the compose file and the Kubernetes example are
// linted and cross-checked instead (files they name exist, ports and names agree with the balancer
// configurations, every `nanollm serve` flag they pass exists).
const ROOT = path.resolve(DOCKER_DIR, "..");
const read = (file: string) => fs.readFileSync(path.join(DOCKER_DIR, file), "utf8");

/** The `server host:port` lines of one nginx upstream. */
function nginxServers(upstream: string): string[] {
  const block = new RegExp(`upstream ${upstream} \\{([^}]*)\\}`).exec(read("nginx.conf"))?.[1] ?? "";
  return [...block.matchAll(/^\s*server (\S+?)[; ]/gm)].map((m) => m[1] ?? "");
}

/** The `server name "host:port"` addresses of one HAProxy backend, with NANOLLM_DOMAIN left out. */
function haproxyServers(backend: string): string[] {
  const block = new RegExp(`\\nbackend ${backend}\\n([\\s\\S]*?)(\\n\\n|$)`).exec(read("haproxy.cfg"))?.[1] ?? "";
  return [...block.matchAll(/^\s*server \S+ "([^"]+)"/gm)].map((m) => (m[1] ?? "").replace("${NANOLLM_DOMAIN}", ""));
}

let serveFlags: Set<string>;
/** Asserts each --flag in `args` is one `nanollm serve --help` lists. */
function assertServeFlags(args: string[], where: string) {
  for (const flag of args.filter((a) => a.startsWith("--"))) assert.ok(serveFlags.has(flag), `${where} passes ${flag}, which nanollm serve does not have`);
}

before(async () => {
  const help = await nanollm(["serve", "--help"]);
  serveFlags = new Set(help.stdout.match(/--[a-z][a-z-]*/g));
  assert.ok(serveFlags.has("--listen"));
});

describe("the images", () => {
  for (const file of ["Dockerfile", "Dockerfile.cuda"]) {
    it(`${file}: lints clean, builds with make build from files that exist, runs nanollm serve on 7433`, () => {
      const text = read(file);
      const problems = validate(text).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
      assert.deepEqual(problems, [], `${file} has lint problems`);
      const instructions = DockerfileParser.parse(text).getInstructions();
      const stages: string[] = [];
      for (const ins of instructions) {
        const args = ins.getArguments().map((a) => a.getValue());
        const kw = ins.getKeyword();
        if (kw === "FROM" && args[1]?.toUpperCase() === "AS") stages.push(args[2] ?? "");
        if (!(ins instanceof Copy)) continue;
        const from = ins.getFromFlag()?.getValue();
        const sources = args.slice(0, -1);
        if (from) assert.ok(stages.includes(from) || from.includes(":"), `COPY --from=${from} names a stage declared before it`);
        else for (const src of sources) assert.ok(fs.existsSync(path.join(ROOT, src)), `COPY ${src}: no such file in the repository`);
      }
      const run = instructions.filter((i) => i.getKeyword() === "RUN").map((i) => i.getArgumentsContent());
      assert.equal(run.at(-1), "make build", "the image builds the way a developer does");
      for (const r of run.slice(0, -1)) assert.match(r ?? "", /^apt-get update && apt-get install -y --no-install-recommends [\w ]+ && rm -rf \/var\/lib\/apt\/lists\/\*$/, "before it, only build tools are installed");
      const entry = JSON.parse(instructions.find((i) => i.getKeyword() === "ENTRYPOINT")?.getArgumentsContent() ?? "[]") as string[];
      assert.deepEqual(entry.slice(0, 4), ["bin/nanollm", "serve", "--listen", "0.0.0.0:7433"]);
      assert.ok(fs.existsSync(path.join(ROOT, "bin/nanollm")));
      assertServeFlags(entry, file);
      assert.match(text, /^EXPOSE 7433 7434$/m);
    });
  }

  it("make image and make image-cuda build them from the repository root, which .dockerignore keeps to sources", () => {
    const commands = execFileSync("make", ["-n", "--no-print-directory", "image", "image-cuda"], { cwd: ROOT, encoding: "utf8" }).trim().split("\n");
    assert.deepEqual(commands, ["docker build -f docker/Dockerfile -t nanollm .", "docker build -f docker/Dockerfile.cuda -t nanollm:cuda ."]);
    const ignored = fs.readFileSync(path.join(ROOT, ".dockerignore"), "utf8").split("\n");
    for (const built of ["**/node_modules", "**/dist", "shared/src/gen", "daemon/native/build"]) assert.ok(ignored.includes(built), `.dockerignore leaves out ${built}`);
  });
});

describe("compose.yaml: N daemons, nginx, PostgreSQL", () => {
  const compose = parse(read("compose.yaml"), { merge: true }) as { services: Record<string, Service> };
  type Service = { image?: string; command?: string[]; volumes?: string[]; ports?: string[]; networks?: { default?: { aliases?: string[] } }; depends_on?: unknown };
  const daemons = Object.entries(compose.services).filter(([name]) => /^nanollm-\d+$/.test(name));

  it("nginx balances over exactly the compose daemons, on the ports they serve", () => {
    assert.ok(daemons.length >= 2);
    const aliases = daemons.map(([, s]) => s.networks?.default?.aliases?.[0]).sort();
    assert.deepEqual(nginxServers("nanollm_grpc").sort(), aliases.map((a) => `${a}:7433`));
    assert.deepEqual(nginxServers("nanollm_http").sort(), aliases.map((a) => `${a}:7434`));
    for (const [name, s] of daemons) {
      assert.equal(s.networks?.default?.aliases?.[0], `${name}.nanollm`, "each daemon is reachable by the name the balancers use");
      const command = s.command ?? [];
      assert.equal(command[command.indexOf("--http") + 1], "0.0.0.0:7434");
      assert.ok(command.includes("--insecure"), "a daemon on the compose network serves without TLS only when told");
      assertServeFlags(command, name);
      const store = command[command.indexOf("--store") + 1] ?? "";
      assert.equal(new URL(store).hostname, "postgres");
      assert.ok(compose.services.postgres, "the store's host is the compose PostgreSQL");
      for (const v of s.volumes ?? []) if (v.startsWith(".")) assert.ok(fs.existsSync(path.resolve(DOCKER_DIR, v.split(":")[0] ?? "")) || v.startsWith("../models:"), `${name} mounts ${v}`);
    }
  });

  it("nginx runs docker/nginx.conf, published on loopback at the ports the configuration listens on", () => {
    const nginx = compose.services.nginx;
    assert.ok(nginx);
    const mount = (nginx.volumes ?? []).find((v) => v.startsWith("./nginx.conf:"))?.split(":");
    assert.ok(mount && fs.existsSync(path.join(DOCKER_DIR, mount[0] ?? "")));
    assert.equal(nginx.command?.[nginx.command.indexOf("-c") + 1], mount[1], "nginx reads the mounted configuration");
    const listens = [...read("nginx.conf").matchAll(/^\s*listen (\d+)/gm)].map((m) => m[1]);
    assert.deepEqual(nginx.ports, listens.map((p) => `127.0.0.1:${p}:${p}`));
  });
});

describe("k8s/nanollm.yaml: StatefulSet, headless Service, HAProxy", () => {
  type Doc = { kind: string; metadata: { name: string }; spec: Record<string, unknown> & { template?: { spec: PodSpec } } };
  type PodSpec = { containers: { args: string[]; ports: { containerPort: number }[]; readinessProbe?: { grpc?: { port: number } }; volumeMounts?: { name: string; mountPath: string }[] }[]; volumes?: { name: string; configMap?: { name: string } }[] };
  const docs = parseAllDocuments(fs.readFileSync(path.join(DOCKER_DIR, "k8s/nanollm.yaml"), "utf8")).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as Doc;
  });
  const kustomization = parse(read("kustomization.yaml")) as { resources: string[]; configMapGenerator: { name: string; files: string[] }[] };
  const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name);

  it("the StatefulSet's pods are the servers haproxy.cfg balances, through a headless Service", () => {
    const sts = find("StatefulSet", "nanollm");
    assert.ok(sts);
    const service = find("Service", sts.spec.serviceName as string);
    assert.equal(service?.spec.clusterIP, "None", "a headless Service gives each pod its own name");
    const pods = Array.from({ length: sts.spec.replicas as number }, (_, i) => `${sts.metadata.name}-${i}.${service?.metadata.name}`);
    assert.deepEqual(haproxyServers("nanollm_grpc"), pods.map((p) => `${p}:7433`));
    assert.deepEqual(haproxyServers("nanollm_http"), pods.map((p) => `${p}:7434`));
    const daemon = sts.spec.template?.spec.containers[0];
    assert.deepEqual(daemon?.ports.map((p) => p.containerPort), [7433, 7434]);
    assert.equal(daemon?.readinessProbe?.grpc?.port, 7433, "readiness is the daemon's gRPC health service");
    assertServeFlags(daemon?.args ?? [], "the StatefulSet");
  });

  it("kustomize turns haproxy.cfg into the ConfigMap HAProxy reads", () => {
    for (const r of kustomization.resources) assert.ok(fs.existsSync(path.join(DOCKER_DIR, r)), `kustomization names ${r}`);
    const generated = kustomization.configMapGenerator[0];
    assert.deepEqual(generated?.files, ["haproxy.cfg"]);
    const pod = find("Deployment", "nanollm-balancer")?.spec.template?.spec;
    const volume = pod?.volumes?.find((v) => v.configMap?.name === generated?.name);
    assert.ok(volume, "the balancer mounts the generated ConfigMap");
    const container = pod?.containers[0];
    const mount = container?.volumeMounts?.find((m) => m.name === volume.name);
    assert.equal(container?.args[container.args.indexOf("-f") + 1], `${mount?.mountPath}/haproxy.cfg`);
    const listens = [...read("haproxy.cfg").matchAll(/^\s*bind :(\d+)/gm)].map((m) => Number(m[1]));
    assert.deepEqual(container?.ports.map((p) => p.containerPort), listens);
  });
});
