// Our daemon as the user runs it: `nanollm serve` in a child process, driven over gRPC.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { NanoClient } from "nanollm/dist/client/NanoClient.js";
import { READY_LINE, type Message, type ModelInfo, type TurnStats } from "@nanollm/shared";
import { CLI_MAIN } from "./paths.js";
import { Child } from "./proc.js";

export interface ServeOptions {
  model: string;
  /** Threads for every step, one-token or batched (llama-server gets the same as -t and -tb); undefined: the daemon's defaults. */
  threads: number | undefined;
  parallel: number;
  ctx: number;
  kvCacheType?: "f16" | "q8_0";
  /** Serve the OpenAI/Ollama HTTP APIs too (on a free port; `httpBase` says where). */
  http?: boolean;
  /** A projector (mmproj GGUF) for images. */
  mmproj?: string;
}

/** One turn as the client saw it, plus the daemon's own stats. */
export interface OurTurn {
  stats: TurnStats;
  /** Client-side: request sent to first text event. */
  ttftMs: number;
  /** Client-side: request sent to end event. */
  wallMs: number;
  reply: string;
  replyTokenIds: number[];
}

export class OurDaemon {
  private constructor(
    private readonly child: Child,
    readonly client: NanoClient,
    private readonly dataDir: string,
    /** The HTTP APIs' base URL (e.g. http://127.0.0.1:PORT), when started with `http`. */
    readonly httpBase: string | undefined,
  ) {}

  static async start(opts: ServeOptions): Promise<OurDaemon> {
    // A private data dir, so journaled sessions of earlier runs (or the user's) never load here.
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "nanollm-bench-"));
    const args = [CLI_MAIN, "serve", "--model", opts.model, "--listen", "127.0.0.1:0", ...(opts.threads === undefined ? [] : ["--threads", String(opts.threads), "--batch-threads", String(opts.threads)]),
      "--parallel", String(opts.parallel), "--ctx", String(opts.ctx), "--gpu", "cpu", "--kv-cache-type", opts.kvCacheType ?? "f16", "--http", opts.http ? "127.0.0.1:0" : "off", ...(opts.mmproj ? ["--mmproj", opts.mmproj] : [])];
    const child = Child.start("nanollm serve", process.execPath, args, { ...process.env, NANOLLM_DATA_DIR: dataDir, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" });
    try {
      const m = await child.waitFor(READY_LINE, 180_000);
      const http = opts.http ? (await child.waitFor(/OpenAI API on (http:\/\/\S+)\/v1/, 30_000))[1] : undefined;
      return new OurDaemon(child, new NanoClient(m[1]!), dataDir, http);
    } catch (err) {
      await child.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** A new session; `history` (alternating user/bot messages) makes the daemon prefill it all. */
  async session(chatTemplate: "raw" | "chat-ml", systemPrompt?: string, history: Message[] = []): Promise<string> {
    return (await this.client.createSession({ chatTemplate, systemPrompt, history })).sessionId;
  }

  /** One greedy turn generating exactly `maxNewTokens` tokens (unless the context fills). */
  async turn(sessionId: string, text: string, maxNewTokens: number): Promise<OurTurn> {
    const started = performance.now();
    let ttftMs = 0;
    const replyTokenIds: number[] = [];
    const params = { maxNewTokens, minNewTokens: maxNewTokens, doSample: false, temperature: 0 };
    for await (const ev of this.client.turn(sessionId, text, params)) {
      const kind = ev.kind;
      if (kind?.$case === "text") {
        ttftMs ||= performance.now() - started;
        replyTokenIds.push(...kind.text.tokenIds);
      } else if (kind?.$case === "end") {
        const stats = kind.end.stats;
        if (!stats) throw new Error("the daemon's TurnEnd has no stats");
        const wallMs = performance.now() - started;
        return { stats, ttftMs: ttftMs || wallMs, wallMs, reply: kind.end.reply, replyTokenIds };
      }
    }
    throw new Error("the turn stream ended without a TurnEnd event");
  }

  async model(): Promise<ModelInfo> {
    const [m] = await this.client.listModels();
    if (!m) throw new Error("the daemon lists no model");
    return m;
  }

  rssBytes(): number | undefined {
    return this.child.rssBytes();
  }

  get log(): string {
    return this.child.log;
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.child.stop();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}
