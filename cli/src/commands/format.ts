import { StopReason, type TurnStats } from "@nanollm/shared";

const REASONS: Record<StopReason, string> = {
  [StopReason.STOP_REASON_UNSPECIFIED]: "unknown",
  [StopReason.STOP_REASON_EOS]: "end of reply",
  [StopReason.STOP_REASON_STOP_STRING]: "stop string",
  [StopReason.STOP_REASON_MAX_TOKENS]: "max new tokens",
  [StopReason.STOP_REASON_CONTEXT_FULL]: "context full",
  [StopReason.STOP_REASON_CANCELLED]: "cancelled",
  [StopReason.UNRECOGNIZED]: "unknown",
};

/** "1 token", "2 tokens". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function stopReasonText(reason: StopReason): string {
  return REASONS[reason] ?? "unknown";
}

/** One line of turn statistics, as `chat` prints them to stderr. */
export function statsLine(s: TurnStats | undefined, reason: StopReason): string {
  if (!s) return `stop: ${stopReasonText(reason)}`;
  return (
    `${s.inputTokens} prompt tokens (${s.reusedTokens} reused, ${s.evaluatedTokens} evaluated) · ` +
    `prefill ${s.prefillMs.toFixed(0)} ms (${s.prefillTokensPerSecond.toFixed(0)} tok/s) · ` +
    `${plural(s.generatedTokens, "token")} in ${s.decodeMs.toFixed(0)} ms (${s.decodeTokensPerSecond.toFixed(1)} tok/s) · ` +
    `first token ${s.timeToFirstTokenMs.toFixed(0)} ms · stop: ${stopReasonText(reason)}`
  );
}
