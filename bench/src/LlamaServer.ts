// The peer: llama.cpp's llama-server in a child process, driven over HTTP on 127.0.0.1 only.
import path from "node:path";
import { PEER_BIN } from "./paths.js";
import { Child, freePort } from "./proc.js";

export interface PeerOptions {
  model: string;
  threads: number;
  parallel: number;
  /** Context tokens per slot (llama-server's -c is the total, split across slots). */
  ctx: number;
  kvCacheType?: "f16" | "q8_0";
  slotSavePath?: string;
  /** Log at llama.cpp's info level (-lv 4), which is where it reports the KV cache size. */
  logKv?: boolean;
  /** A projector (mmproj GGUF) for images. */
  mmproj?: string;
}

/** llama-server's `timings` object of a finished completion. */
export interface PeerTimings {
  cache_n: number;
  prompt_n: number;
  prompt_ms: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_second: number;
}

export interface PeerCompletion {
  content: string;
  timings: PeerTimings;
  /** Client-side: request sent to the first streamed token (streamed requests only). */
  ttftMs: number;
  wallMs: number;
}

export interface CompletionRequest {
  prompt: string;
  nPredict: number;
  cachePrompt: boolean;
  idSlot?: number;
  stream?: boolean;
}

export class LlamaServer {
  /** KV cache size llama.cpp logged when the context was created, in bytes (needs `logKv`). */
  kvBytes: number | undefined;

  private constructor(
    private readonly child: Child,
    /** Its base URL, e.g. http://127.0.0.1:PORT (the OpenAI API is under /v1). */
    readonly base: string,
  ) {}

  static async start(opts: PeerOptions): Promise<LlamaServer> {
    const port = await freePort();
    const args = ["-m", opts.model, "--host", "127.0.0.1", "--port", String(port), "-t", String(opts.threads),
      "-tb", String(opts.threads), "--parallel", String(opts.parallel), "-c", String(opts.ctx * opts.parallel), "--cont-batching"];
    if (opts.kvCacheType === "q8_0") args.push("-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on");
    if (opts.slotSavePath) args.push("--slot-save-path", opts.slotSavePath);
    if (opts.logKv) args.push("-lv", "4");
    if (opts.mmproj) args.push("--mmproj", opts.mmproj, "--no-mmproj-offload");
    const child = Child.start("llama-server", path.join(PEER_BIN, "llama-server"), args);
    const server = new LlamaServer(child, `http://127.0.0.1:${port}`);
    try {
      await child.waitFor(/listening on|all slots are idle/, 180_000);
      await server.waitHealthy();
      const kv = child.log.match(/llama_kv_cache:\s+size =\s+([\d.]+) MiB/);
      server.kvBytes = kv ? Number(kv[1]) * 2 ** 20 : undefined;
      return server;
    } catch (err) {
      await child.stop();
      throw err;
    }
  }

  private async waitHealthy(): Promise<void> {
    for (let i = 0; i < 600; i++) {
      const ok = await fetch(`${this.base}/health`).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`llama-server at ${this.base} never became healthy`);
  }

  /** One greedy completion of exactly `nPredict` tokens (EOS ignored, as ours uses min_new_tokens). */
  async complete(req: CompletionRequest): Promise<PeerCompletion> {
    const body = {
      prompt: req.prompt, n_predict: req.nPredict, temperature: 0, ignore_eos: true,
      cache_prompt: req.cachePrompt, stream: req.stream ?? false, ...(req.idSlot === undefined ? {} : { id_slot: req.idSlot }),
    };
    const started = performance.now();
    const res = await fetch(`${this.base}/completion`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`llama-server /completion: HTTP ${res.status} ${await res.text()}`);
    if (!req.stream) {
      const json = (await res.json()) as { content: string; timings: PeerTimings };
      const wallMs = performance.now() - started;
      return { content: json.content, timings: json.timings, ttftMs: wallMs, wallMs };
    }
    return readStream(res, started);
  }

  /** POST /slots/ID?action=save|restore|erase (needs slotSavePath). */
  async slotAction(id: number, action: "save" | "restore" | "erase", filename?: string): Promise<number> {
    const started = performance.now();
    const res = await fetch(`${this.base}/slots/${id}?action=${action}`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(filename ? { filename } : {}),
    });
    if (!res.ok) throw new Error(`llama-server slot ${action}: HTTP ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
    return performance.now() - started;
  }

  rssBytes(): number | undefined {
    return this.child.rssBytes();
  }

  get log(): string {
    return this.child.log;
  }

  async stop(): Promise<void> {
    await this.child.stop();
  }
}

/** Reads llama-server's server-sent events until the final chunk (which carries the timings). */
async function readStream(res: Response, started: number): Promise<PeerCompletion> {
  if (!res.body) throw new Error("llama-server sent no body");
  const decoder = new TextDecoder();
  let buf = "";
  let content = "";
  let ttftMs = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      const data = event.split("\n").find((l) => l.startsWith("data: "));
      if (!data) continue;
      const json = JSON.parse(data.slice(6)) as { content?: string; stop?: boolean; timings?: PeerTimings };
      if (json.content) {
        ttftMs ||= performance.now() - started;
        content += json.content;
      }
      if (json.stop && json.timings) {
        const wallMs = performance.now() - started;
        return { content, timings: json.timings, ttftMs: ttftMs || wallMs, wallMs };
      }
    }
  }
  throw new Error("llama-server's stream ended without a final chunk");
}
