// Usage: node test/dist/gguf/cli.js OUT.gguf [--seed N] [--n-embd N] [--n-layer N] [--n-head N]
//        [--n-head-kv N] [--n-ff N] [--ctx N] [--weight-type f32|f16|q8_0] [--name S] [--chatml | --chat-template S]
//        [--extra-control-token S]...
import { parseArgs } from "node:util";
import { statSync } from "node:fs";
import { CHATML_TEMPLATE, makeTinyLlama, type TinyLlamaOptions } from "./makeTinyLlama.js";

const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
        seed: { type: "string" },
        "n-embd": { type: "string" },
        "n-layer": { type: "string" },
        "n-head": { type: "string" },
        "n-head-kv": { type: "string" },
        "n-ff": { type: "string" },
        ctx: { type: "string" },
        "weight-type": { type: "string" },
        name: { type: "string" },
        chatml: { type: "boolean" },
        "chat-template": { type: "string" },
        "extra-control-token": { type: "string", multiple: true },
    },
});

const out = positionals[0];
if (out === undefined || positionals.length > 1) {
    console.error("usage: cli.js OUT.gguf [--seed N] [--n-embd N] [--n-layer N] [--n-head N] [--n-head-kv N] " +
        "[--n-ff N] [--ctx N] [--weight-type f32|f16|q8_0] [--name S] [--chatml | --chat-template S] [--extra-control-token S]...");
    process.exit(2);
}

function int(flag: string, v: string | undefined): number | undefined {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
        console.error(`--${flag} expects a non-negative integer, got ${JSON.stringify(v)}`);
        process.exit(2);
    }
    return n;
}

const opts: TinyLlamaOptions = {};
const set = <K extends keyof TinyLlamaOptions>(k: K, v: TinyLlamaOptions[K] | undefined): void => {
    if (v !== undefined) opts[k] = v;
};
set("seed", int("seed", values.seed));
set("nEmbd", int("n-embd", values["n-embd"]));
set("nLayer", int("n-layer", values["n-layer"]));
set("nHead", int("n-head", values["n-head"]));
set("nHeadKv", int("n-head-kv", values["n-head-kv"]));
set("nFf", int("n-ff", values["n-ff"]));
set("contextLength", int("ctx", values.ctx));
set("name", values.name);
set("chatTemplate", values["chat-template"] ?? (values.chatml ? CHATML_TEMPLATE : undefined));
set("extraControlTokens", values["extra-control-token"]);
const wt = values["weight-type"];
if (wt !== undefined && wt !== "f32" && wt !== "f16" && wt !== "q8_0") {
    console.error(`--weight-type expects f32, f16 or q8_0, got ${JSON.stringify(wt)}`);
    process.exit(2);
}
set("weightType", wt);

makeTinyLlama(out, opts);
console.log(`wrote ${out} (${statSync(out).size} bytes)`);
