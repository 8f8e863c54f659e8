// P7: image chat on the bench model with a bench-sized projector (224 px, 256 image tokens) and
// llama.cpp's own test JPEG. Encode: the vision encoder's time for the image, ours (the projector
// our addon loads, timed by clip's encode) ÷ llama-mtmd-cli's "image slice encoded in". TTFT: the
// image turn and the next text turn through the official openai client, ours (/v1/chat/completions
// with a data: URL) ÷ llama-server --mmproj on the same files.
import fs from "node:fs";
import path from "node:path";
import OpenAI from "openai";
import { loadLlama, nativeAddon } from "@nanollm/daemon/dist/engine/native.js";
import { loadProjector } from "@nanollm/daemon/dist/engine/projector.js";
import { benchMmproj } from "../models.js";
import { ROOT } from "../paths.js";
import { mtmdCliEncodeMs } from "../peerTools.js";
import { compare, median } from "../report.js";
import { withBoth, type Figure } from "./context.js";
import { streamTurn } from "./p6OpenAi.js";

const IMAGE = path.join(ROOT, "daemon", "native", "build-mtmd", "src", "tools", "mtmd", "test-1.jpeg");
const REPLY_TOKENS = 16;

interface Chat {
  imageTtftMs: number;
  nextTtftMs: number;
  nextCached: number | undefined;
  nextPrompt: number;
}

export const p7Image: Figure = async (ctx) => {
  const reps = ctx.quick ? 1 : 3;
  const { file: mmproj, imageTokens } = benchMmproj(ctx.model.includes("-tiny-") ? "tiny" : "big");
  const image = fs.readFileSync(IMAGE);
  const ours = await ourEncodeMs(ctx.model, mmproj, image, ctx.threads, reps);
  const peer = await mtmdCliEncodeMs(ctx.model, mmproj, IMAGE, ctx.threads, reps);
  ctx.log(`P7 encode: ours ${ours.map((m) => m.toFixed(0)).join(", ")} ms; llama-mtmd-cli ${peer.join(", ")} ms`);
  const runs = await withBoth(ctx, { parallel: 2, ctx: 2048, http: true, mmproj }, async (o, p) => {
    const clients = { ours: new OpenAI({ baseURL: `${o.httpBase!}/v1`, apiKey: "unused", maxRetries: 0 }), peer: new OpenAI({ baseURL: `${p.base}/v1`, apiKey: "unused", maxRetries: 0 }) };
    const out: { ours: Chat; peer: Chat }[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const pair = { ours: await chat(clients.ours, image, rep), peer: await chat(clients.peer, image, rep) };
      ctx.log(`P7 chat ${rep + 1}: image turn TTFT ours ${pair.ours.imageTtftMs.toFixed(0)} ms, llama-server ${pair.peer.imageTtftMs.toFixed(0)} ms; ` +
        `next turn ours ${pair.ours.nextTtftMs.toFixed(0)} ms (cached ${pair.ours.nextCached}/${pair.ours.nextPrompt}), llama-server ${pair.peer.nextTtftMs.toFixed(0)} ms (cached ${pair.peer.nextCached}/${pair.peer.nextPrompt})`);
      out.push(pair);
    }
    return out;
  });
  const best = (side: "ours" | "peer", key: "imageTtftMs" | "nextTtftMs") => Math.min(...runs.map((r) => r[side][key]));
  const mid = (side: "ours" | "peer", key: "imageTtftMs" | "nextTtftMs") => median(runs.map((r) => r[side][key])).toFixed(0);
  const last = runs.at(-1)!;
  const note = `${imageTokens} image tokens (224 px, patch 14, 6 × 384 tower, f16), llama.cpp's test-1.jpeg; best of ${reps}`;
  return {
    rows: [
      compare("P7", "image encode", "ms", Math.min(...ours), Math.min(...peer), "llama-mtmd-cli", { op: "<=", value: 1.0 }, `${note}; medians ${median(ours).toFixed(0)} / ${median(peer).toFixed(0)} ms`),
      compare("P7", "TTFT image turn, openai client", "ms", best("ours", "imageTtftMs"), best("peer", "imageTtftMs"), "llama-server --mmproj", { op: "<=", value: 1.0 },
        `encode + image and text prefill to the first token; medians ${mid("ours", "imageTtftMs")} / ${mid("peer", "imageTtftMs")} ms`),
      compare("P7", "TTFT next text turn", "ms", best("ours", "nextTtftMs"), best("peer", "nextTtftMs"), "llama-server --mmproj", { op: "<=", value: 1.0 },
        `cached prompt tokens ${last.ours.nextCached ?? "?"}/${last.ours.nextPrompt} (ours), ${last.peer.nextCached ?? "?"}/${last.peer.nextPrompt} (peer); medians ${mid("ours", "nextTtftMs")} / ${mid("peer", "nextTtftMs")} ms`),
    ],
    raw: { imageTokens, encodeMs: { ours, peer }, runs },
  };
};

/** Our projector's encode time for `image`, each of `reps` encodes (the addon in this process, clip's own clock). */
async function ourEncodeMs(model: string, mmproj: string, image: Buffer, threads: number, reps: number): Promise<number[]> {
  const lib = loadLlama("cpu");
  const m = await nativeAddon().loadModel(model, { gpuLayers: 0 });
  const projector = await loadProjector(mmproj, m, lib, { threads, probe: false });
  try {
    const out: number[] = [];
    for (let i = 0; i < reps; i++) {
      const { chunks } = await projector.tokenize(projector.info().marker, [image]);
      const chunk = chunks.find((c) => c.kind === "image");
      if (!chunk || chunk.kind === "text") throw new Error("the projector made no image chunk of the test image");
      out.push((await projector.encode(chunk.chunk)).ms);
    }
    return out;
  } finally {
    projector.dispose();
    m.dispose();
  }
}

/** One chat: a question about the image (streamed), then a text follow-up resending the conversation. */
async function chat(client: OpenAI, image: Buffer, rep: number): Promise<Chat> {
  const model = (await client.models.list()).data[0]?.id ?? "model";
  const system: OpenAI.Chat.ChatCompletionMessageParam = { role: "system", content: `Chat ${rep + 1}. You are a helpful AI assistant.` };
  const first: OpenAI.Chat.ChatCompletionMessageParam = {
    role: "user",
    content: [{ type: "image_url", image_url: { url: `data:image/jpeg;base64,${image.toString("base64")}` } }, { type: "text", text: "What is in this picture?" }],
  };
  const a = await streamTurn(client, model, [system, first], REPLY_TOKENS);
  const b = await streamTurn(client, model, [system, first, { role: "assistant", content: a.reply }, { role: "user", content: "Tell me more about the colours." }], REPLY_TOKENS);
  return { imageTtftMs: a.side.ttftMs, nextTtftMs: b.side.ttftMs, nextCached: b.side.cachedTokens, nextPrompt: b.side.promptTokens };
}
