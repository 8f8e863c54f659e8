import http from "node:http";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { fail, formatAddress, parseAddress } from "@nanollm/shared";
import type { ModelRegistry } from "../models/ModelRegistry.js";
import type { TurnResult } from "../sessions/runTurn.js";
import type { Session } from "../sessions/Session.js";
import type { SessionStore } from "../sessions/SessionStore.js";

/**
 * Prometheus metrics, labelled by model only (never by session id or text). Counters come from
 * each turn's TurnStats; gauges are read from the session store when scraped.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly turns: Counter<"model" | "outcome">;
  private readonly generated: Counter<"model">;
  private readonly evaluated: Counter<"model">;
  private readonly reused: Counter<"model">;
  private readonly evictions: Counter<"model">;
  private readonly ttft: Histogram<"model">;
  private readonly decodeRate: Histogram<"model">;

  constructor(sessions: SessionStore) {
    const registers = [this.registry];
    this.turns = new Counter({ name: "nanollm_turns_total", help: "Chat turns that ended, by outcome (ok or error).", labelNames: ["model", "outcome"], registers });
    this.generated = new Counter({ name: "nanollm_generated_tokens_total", help: "Reply tokens generated.", labelNames: ["model"], registers });
    this.evaluated = new Counter({ name: "nanollm_evaluated_tokens_total", help: "Prompt tokens evaluated (not found in the KV cache).", labelNames: ["model"], registers });
    this.reused = new Counter({ name: "nanollm_reused_tokens_total", help: "Prompt tokens reused from the KV cache.", labelNames: ["model"], registers });
    this.evictions = new Counter({
      name: "nanollm_kv_evictions_total",
      help: "Turns of a session with history that found none of it cached: its KV-cache sequence had been lent to another session.",
      labelNames: ["model"],
      registers,
    });
    this.ttft = new Histogram({ name: "nanollm_time_to_first_token_seconds", help: "Time from a turn's start to its first reply token.", labelNames: ["model"], buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers });
    this.decodeRate = new Histogram({ name: "nanollm_decode_tokens_per_second", help: "Reply tokens per second after the first, per turn.", labelNames: ["model"], buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], registers });
    const perModel = (gauge: Gauge<"model">, value: (s: Session) => number) => {
      gauge.reset();
      const totals = new Map<string, number>();
      for (const s of sessions.all()) totals.set(s.host.facts.name, (totals.get(s.host.facts.name) ?? 0) + value(s));
      for (const [model, n] of totals) gauge.set({ model }, n);
    };
    new Gauge({ name: "nanollm_sessions", help: "Sessions the daemon keeps.", labelNames: ["model"], registers, collect() { perModel(this, () => 1); } });
    new Gauge({ name: "nanollm_running_turns", help: "Turns running now (generating or queued).", labelNames: ["model"], registers, collect() { perModel(this, (s) => (s.running ? 1 : 0)); } });
    new Gauge({ name: "nanollm_queue_depth", help: "Turns waiting for a free KV-cache sequence.", labelNames: ["model"], registers, collect() { perModel(this, (s) => (s.running?.waiting ? 1 : 0)); } });
    new Gauge({ name: "nanollm_turns_waiting_for_session", help: "Turns waiting for their session's running turn (one writer at a time).", labelNames: ["model"], registers, collect() { perModel(this, (s) => s.queue.length); } });
    new Gauge({ name: "nanollm_watchers", help: "Clients watching sessions (Attach).", labelNames: ["model"], registers, collect() { perModel(this, (s) => s.feed.watching); } });
    new Gauge({ name: "nanollm_kv_cells_used", help: "KV-cache cells (tokens) the sessions' sequences hold.", labelNames: ["model"], registers, collect() { perModel(this, (s) => s.host.pool.cachedLength(s.id)); } });
  }

  /** Gauges of the models: each known one's memory when loaded (0 when unloaded), and the budget they share. */
  watchModels(models: ModelRegistry): void {
    const registers = [this.registry];
    new Gauge({
      name: "nanollm_model_memory_bytes",
      help: "Memory a model takes while loaded (weights, projector, KV cache); 0 while unloaded (idle past --keep-alive, or for the budget).",
      labelNames: ["model"],
      registers,
      collect() {
        this.reset();
        for (const h of models.list()) this.set({ model: h.facts.name }, h.loaded ? h.memoryBytes : 0);
      },
    });
    const budget = Math.min(models.policy.memoryBudget, Number.MAX_SAFE_INTEGER);
    new Gauge({ name: "nanollm_memory_budget_bytes", help: "The memory budget loaded models share (--memory-budget).", registers, collect() { this.set(budget); } });
  }

  /** Counts a finished turn; `warm` says the session had history before it. */
  turnEnded(model: string, result: TurnResult, warm: boolean): void {
    const { stats } = result;
    this.turns.inc({ model, outcome: "ok" });
    this.generated.inc({ model }, stats.generatedTokens);
    this.evaluated.inc({ model }, stats.evaluatedTokens);
    this.reused.inc({ model }, stats.reusedTokens);
    // inc by 0 still creates the series, so a scrape shows 0 rather than nothing.
    this.evictions.inc({ model }, warm && stats.reusedTokens === 0 ? 1 : 0);
    if (stats.generatedTokens > 0) this.ttft.observe({ model }, stats.timeToFirstTokenMs / 1000);
    if (stats.decodeTokensPerSecond > 0) this.decodeRate.observe({ model }, stats.decodeTokensPerSecond);
  }

  turnFailed(model: string): void {
    this.turns.inc({ model, outcome: "error" });
  }

  /** Serves GET /metrics over plain HTTP on `listen`; resolves with the bound address. */
  async serve(listen: string): Promise<{ address: string; close: () => Promise<void> }> {
    const { host, port } = parseAddress(listen);
    const server = http.createServer((req, res) => {
      if (req.method !== "GET" || req.url?.split("?")[0] !== "/metrics") {
        res.writeHead(404).end("nanollm serves only GET /metrics here\n");
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(fail.unavailable(`Cannot serve metrics on ${listen} (${err.message}); pick another address with --metrics.`)));
      server.listen(port, host, () => resolve());
    });
    const bound = server.address();
    const address = formatAddress(host, typeof bound === "object" && bound ? bound.port : port);
    return { address, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }
}
