// Runs client calls against a daemon and prints their outcomes as one JSON line. The LAN test
// runs it inside another network namespace (`ip netns exec NS node remoteCalls.js JSON`).
import { NanoError } from "@nanollm/shared";
import { NanoClient, type Connection } from "nanollm/dist/client/NanoClient.js";

export type Op =
  | { op: "info" }
  | { op: "list" }
  | { op: "create"; model?: string }
  | { op: "get" | "reset" | "delete"; sessionId: string }
  | { op: "chat"; sessionId: string; text: string };

export interface Outcome {
  ok: boolean;
  value?: unknown;
  code?: string;
  message?: string;
  ms: number;
}

/** Runs `ops` in order with one client; each failure is recorded, not thrown. */
export async function runCalls(host: string, conn: Connection, ops: Op[]): Promise<Outcome[]> {
  const client = new NanoClient(host, conn);
  const outcomes: Outcome[] = [];
  try {
    for (const op of ops) {
      const started = performance.now();
      try {
        const value = await call(client, op);
        outcomes.push({ ok: true, value, ms: performance.now() - started });
      } catch (err) {
        const e = err instanceof NanoError ? err : new NanoError("INTERNAL", String(err));
        outcomes.push({ ok: false, code: e.code, message: e.message, ms: performance.now() - started });
      }
    }
  } finally {
    client.close();
  }
  return outcomes;
}

async function call(client: NanoClient, op: Op): Promise<unknown> {
  switch (op.op) {
    case "info":
      return client.serverInfo();
    case "list":
      return (await client.listSessions()).map((s) => s.sessionId);
    case "create":
      return (await client.createSession({ model: op.model ?? "", chatTemplate: "chat-ml" })).sessionId;
    case "get":
      return (await client.getSession(op.sessionId)).sessionId;
    case "reset":
      return (await client.resetSession(op.sessionId)).sessionId;
    case "delete":
      return client.deleteSession(op.sessionId);
    case "chat": {
      let textEvents = 0;
      for await (const ev of client.turn(op.sessionId, op.text, { maxNewTokens: 8 })) {
        if (ev.kind?.$case === "text") textEvents++;
        if (ev.kind?.$case === "end") return { reply: ev.kind.end.reply, textEvents, generated: ev.kind.end.stats?.generatedTokens };
      }
      throw new Error("the stream ended without a TurnEnd");
    }
    default:
      return op satisfies never;
  }
}

if (process.argv[1]?.endsWith("remoteCalls.js") && process.argv[2]) {
  const { host, conn, ops } = JSON.parse(process.argv[2]) as { host: string; conn: Connection; ops: Op[] };
  process.stdout.write(`${JSON.stringify(await runCalls(host, conn, ops))}\n`);
}
