import { randomUUID } from "node:crypto";
import { BUILTINS } from "../functions/builtins.js";
import type { FoundCall, FunctionSet } from "../functions/FunctionSet.js";

export interface CallOutcome {
  result: string;
  isError: boolean;
}

/** How a turn reports calls and, for client functions, gets the answer (with a timeout). */
export interface CallSink {
  functionCall(call: { callId: string; name: string; argumentsJson: string; clientSide: boolean }): Promise<void>;
  /** Resolves with the calling client's answer, or an error outcome when it does not answer in time. */
  clientResult(callId: string, name: string): Promise<CallOutcome>;
  functionResult(result: { callId: string; name: string; result: string; isError: boolean }): Promise<void>;
}

/** Most function calls one turn may make; later calls are answered with an error. */
export const MAX_CALLS_PER_TURN = 8;

/**
 * Watches one turn's reply for inline calls (`NAME(args)` ending the text so far), runs each once,
 * and returns the text to add to the reply. Failures become error text for the model and an
 * error result for the client; the turn goes on.
 */
export class TurnCalls {
  /** Reply text before this offset is handled: calls in it ran already. */
  private scanFrom = 0;
  private made = 0;

  constructor(
    private readonly functions: FunctionSet,
    private readonly sink: CallSink,
    /** Whether inline `NAME(args)` calls are watched for (tool calls the template delimits always are). */
    private readonly inline = true,
  ) {}

  /** Whether the reply can hold inline calls at all (the session has functions). */
  get watching(): boolean {
    return this.inline && !this.functions.empty;
  }

  async check(text: string): Promise<string | undefined> {
    if (!this.watching) return undefined;
    const found = this.functions.callAtEnd(text, this.scanFrom);
    return found && this.handle(found);
  }

  /** A tool call the template delimited, checked against the functions; undefined when it is not a valid call. */
  parse(json: string): { name: string; argumentsJson: string } | undefined {
    const found = this.functions.toolCall(json);
    return "error" in found ? undefined : { name: found.name, argumentsJson: found.argumentsJson };
  }

  /** Runs a tool call the template delimited; returns the tool response text. */
  async toolCall(json: string): Promise<string> {
    return this.handle(this.functions.toolCall(json));
  }

  private async handle(found: FoundCall): Promise<string> {
    const callId = randomUUID();
    const spec = "spec" in found ? found.spec : undefined;
    await this.sink.functionCall({ callId, name: found.name, argumentsJson: "argumentsJson" in found ? found.argumentsJson : "", clientSide: spec?.clientSide ?? false });
    const outcome = await this.run(found, callId);
    await this.sink.functionResult({ callId, name: found.name, ...outcome });
    return outcome.isError ? `Error: ${outcome.result}` : outcome.result;
  }

  /** Marks the reply text up to `length` (the call and its inserted result) as handled. */
  handledUpTo(length: number): void {
    this.scanFrom = length;
  }

  private async run(found: FoundCall, callId: string): Promise<CallOutcome> {
    if (++this.made > MAX_CALLS_PER_TURN) return { result: `more than ${MAX_CALLS_PER_TURN} function calls in one turn; answer without calling functions`, isError: true };
    if ("error" in found) return { result: found.error, isError: true };
    if (found.spec.clientSide) return this.sink.clientResult(callId, found.name);
    try {
      return { result: BUILTINS[found.name]!.run(), isError: false };
    } catch (err) {
      return { result: `${found.name} failed (${(err as Error).message})`, isError: true };
    }
  }
}
