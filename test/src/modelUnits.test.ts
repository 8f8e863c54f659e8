import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { NanoError, parseBytes, parseKeepAlive } from "@nanollm/shared";
import { chooseModel, chooseProjector, parseHf } from "@nanollm/daemon/dist/models/huggingFace.js";

const repo = ["README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-F16.gguf", "mmproj-m-bf16.gguf", "mmproj-m-f16.gguf", "big-Q6_K-00001-of-00002.gguf", "big-Q6_K-00002-of-00002.gguf"];

describe("model units", () => {
  it("parseBytes takes plain bytes and binary units; anything else is one sentence", () => {
    assert.equal(parseBytes("8G"), 8 * 2 ** 30);
    assert.equal(parseBytes("512M"), 512 * 2 ** 20);
    assert.equal(parseBytes("1.5GiB"), 1.5 * 2 ** 30);
    assert.equal(parseBytes("4096"), 4096);
    assert.throws(() => parseBytes("lots"), (e: NanoError) => e.message === '"lots" is not a size; write it as bytes or with a unit, e.g. 8G or 512M.');
    assert.throws(() => parseBytes("5X"));
  });

  it("parseKeepAlive: durations, 0 and -1 (forever); a bare number is seconds", () => {
    assert.equal(parseKeepAlive("5m"), 300_000);
    assert.equal(parseKeepAlive("30s"), 30_000);
    assert.equal(parseKeepAlive("250ms"), 250);
    assert.equal(parseKeepAlive("1h"), 3_600_000);
    assert.equal(parseKeepAlive("0"), 0);
    assert.equal(parseKeepAlive("-1"), -1);
    assert.equal(parseKeepAlive("10"), 10_000);
    assert.throws(() => parseKeepAlive("-5m"), /is not a keep-alive duration/);
  });

  it("hf: URIs name a repository, and a quantization or a file; the model and projector are chosen from its files", () => {
    assert.deepEqual(parseHf("hf:acme/m-GGUF:Q8_0"), { repo: "acme/m-GGUF", quant: "Q8_0", file: undefined });
    assert.deepEqual(parseHf("hf:acme/m-GGUF/sub/m-F16.gguf"), { repo: "acme/m-GGUF", quant: undefined, file: "sub/m-F16.gguf" });
    assert.throws(() => parseHf("hf:nothing"), /is not an hf: URI/);
    assert.equal(chooseModel(parseHf("hf:acme/m:Q8_0"), repo), "m-Q8_0.gguf");
    assert.equal(chooseModel(parseHf("hf:acme/m:q8_0"), repo), "m-Q8_0.gguf");
    // Without a quantization, Q4_K_M (what most hubs recommend) when there are several.
    assert.equal(chooseModel(parseHf("hf:acme/m"), repo), "m-Q4_K_M.gguf");
    assert.equal(chooseModel(parseHf("hf:acme/m"), ["only.gguf", "mmproj-x.gguf"]), "only.gguf");
    assert.throws(() => chooseModel(parseHf("hf:acme/m:Q6_K"), repo), /is split into several files/);
    assert.throws(() => chooseModel(parseHf("hf:acme/m:IQ2_XS"), repo), /has no IQ2_XS model file/);
    assert.equal(chooseProjector(repo), "mmproj-m-f16.gguf");
    assert.equal(chooseProjector(["m.gguf"]), undefined);
  });
});
