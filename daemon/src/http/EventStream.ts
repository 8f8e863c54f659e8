import type { ServerResponse } from "node:http";

/**
 * A streamed response: server-sent events (`data: JSON`, for the OpenAI API) or one JSON object a
 * line (NDJSON, for Ollama's). Each send waits until the client has taken the previous data
 * (the socket's `drain`), so a slow reader slows the turn instead of growing a buffer.
 */
export class EventStream {
  constructor(
    private readonly res: ServerResponse,
    private readonly format: "sse" | "ndjson",
  ) {}

  open(): void {
    this.res.writeHead(200, {
      "content-type": this.format === "sse" ? "text/event-stream; charset=utf-8" : "application/x-ndjson; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      // Proxies such as nginx otherwise hold events back.
      "x-accel-buffering": "no",
    });
  }

  /** Writes one event (an object as JSON, or SSE's literal `[DONE]`); resolves once it may write more. */
  async send(payload: object | "[DONE]"): Promise<void> {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    const json = typeof payload === "string" ? payload : JSON.stringify(payload);
    if (res.write(this.format === "sse" ? `data: ${json}\n\n` : `${json}\n`)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      res.on("drain", done);
      res.on("close", done);
    });
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
