import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

const CLI_DIST = fileURLToPath(new URL("../../cli/dist/", import.meta.url));

/** Specifiers a compiled module imports: static imports and re-exports, and dynamic import()s apart. */
function importsOf(file: string): { staticSpecs: string[]; dynamicSpecs: string[] } {
  const code = fs.readFileSync(file, "utf8");
  const staticSpecs = [...code.matchAll(/^\s*(?:import|export)\s[^;]*?from\s*["']([^"']+)["']/gm), ...code.matchAll(/^\s*import\s*["']([^"']+)["']/gm)].map((m) => m[1]!);
  const dynamicSpecs = [...code.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!);
  return { staticSpecs, dynamicSpecs };
}

describe("the client does not depend on the daemon (defect 14)", () => {
  it("nothing the CLI loads statically, nor the chat it loads lazily, imports @nanollm/daemon or node-llama-cpp", () => {
    const seen = new Set<string>();
    const offenders: string[] = [];
    const visit = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const { staticSpecs, dynamicSpecs } = importsOf(file);
      for (const spec of staticSpecs) {
        if (/^(@nanollm\/daemon|node-llama-cpp)/.test(spec)) offenders.push(`${path.relative(CLI_DIST, file)} imports ${spec}`);
      }
      // Relative modules are followed, the lazily loaded chat screen (ui/runTui) included.
      for (const spec of [...staticSpecs, ...dynamicSpecs]) if (spec.startsWith(".")) visit(path.resolve(path.dirname(file), spec));
    };
    visit(path.join(CLI_DIST, "main.js"));
    assert.ok(seen.has(path.join(CLI_DIST, "ui/commands/conversation.js")), "the walk reached the slash commands");
    assert.deepEqual(offenders, []);
  });

  it("the CLI package does not install the daemon: it is an optional peer, loaded only by serve, pull, tokens and templates render", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(CLI_DIST, "../package.json"), "utf8")) as { dependencies: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }> };
    assert.equal(pkg.dependencies["@nanollm/daemon"], undefined);
    assert.equal(pkg.peerDependenciesMeta?.["@nanollm/daemon"]?.optional, true);
  });
});
