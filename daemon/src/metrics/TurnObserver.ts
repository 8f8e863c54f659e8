import type { Identity } from "../auth/Identity.js";
import type { TurnResult } from "../sessions/runTurn.js";
import type { Session } from "../sessions/Session.js";
import type { Metrics } from "./Metrics.js";

export interface ObservedTurn {
  who: Identity;
  session: Session;
  /** The user's message; logged only with --log-text. */
  text: string;
  /** The session had history before this turn. */
  warm: boolean;
  startedAt: number;
}

/** One log line and the metrics per turn. */
export class TurnObserver {
  constructor(
    private readonly metrics: Metrics,
    private readonly log: (line: string) => void,
    private readonly logText: boolean,
  ) {}

  ended(turn: ObservedTurn, result: TurnResult): void {
    const model = turn.session.host.facts.name;
    this.metrics.turnEnded(model, result, turn.warm);
    const s = result.stats;
    const text = this.logText ? ` text ${JSON.stringify(turn.text)} reply ${JSON.stringify(result.reply)}` : "";
    this.log(`turn ${turn.who.name} session ${turn.session.id} model ${model}: ${s.inputTokens} prompt tokens (${s.evaluatedTokens} evaluated), ${s.generatedTokens} generated, first token ${Math.round(s.timeToFirstTokenMs)} ms, ${Math.round(performance.now() - turn.startedAt)} ms${text}`);
  }

  failed(turn: ObservedTurn, err: unknown): void {
    const model = turn.session.host.facts.name;
    this.metrics.turnFailed(model);
    const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
    this.log(`turn ${turn.who.name} session ${turn.session.id} model ${model} failed after ${Math.round(performance.now() - turn.startedAt)} ms: ${why}`);
  }
}
