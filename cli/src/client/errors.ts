import { status, type ServiceError } from "@grpc/grpc-js";
import { NanoError, type ErrorCode } from "@nanollm/shared";

/** The daemon's error kinds by the gRPC status each travels as. */
export const FROM_STATUS: Partial<Record<status, ErrorCode>> = {
  [status.NOT_FOUND]: "NOT_FOUND",
  [status.INVALID_ARGUMENT]: "INVALID_ARGUMENT",
  [status.FAILED_PRECONDITION]: "FAILED_PRECONDITION",
  [status.RESOURCE_EXHAUSTED]: "RESOURCE_EXHAUSTED",
  [status.CANCELLED]: "CANCELLED",
  [status.UNAVAILABLE]: "UNAVAILABLE",
  [status.UNAUTHENTICATED]: "UNAUTHENTICATED",
  [status.PERMISSION_DENIED]: "PERMISSION_DENIED",
  [status.OUT_OF_RANGE]: "OUT_OF_RANGE",
};

/** A gRPC failure as the daemon's own sentence; "nothing listening" says how to start one. */
export function toClientError(err: unknown, host: string): NanoError {
  if (err instanceof NanoError) return err;
  const e = err as Partial<ServiceError>;
  const details = e.details ?? "";
  if (e.code === status.UNAVAILABLE && /certificate|SSL|TLS|handshake|EPROTO|self.signed|altname|IP: .* is not in the cert/i.test(details)) {
    return new NanoError("UNAVAILABLE", `The TLS handshake with ${host} failed (${lastError(details)}); check --tls-ca (the daemon's CA) and, for mutual TLS, --tls-cert/--tls-key.`);
  }
  if (e.code === status.UNAVAILABLE && /ECONNREFUSED|Name resolution/i.test(details)) {
    return new NanoError("UNAVAILABLE", `Nothing is listening at ${host}; start the daemon with \`nanollm serve\` (or pass --host).`);
  }
  if (e.code === status.UNAVAILABLE && /No connection established|Connection dropped|connect|protocol|closed/i.test(details)) {
    return new NanoError("UNAVAILABLE", `Could not talk to a daemon at ${host} (${lastError(details)}); if it serves TLS, pass --tls-ca; otherwise check --host.`);
  }
  // A stream reset from the other end (a balancer whose daemon died mid-call: nginx resets with
  // INTERNAL_ERROR, HAProxy with CANCEL), not an answer: say what happened and what to do.
  if ((e.code === status.INTERNAL && /RST_STREAM/.test(details)) || (e.code === status.CANCELLED && details === "Call cancelled")) {
    return new NanoError("UNAVAILABLE", `The connection to the daemon behind ${host} broke before the call ended (the daemon may have stopped); send it again.`);
  }
  if (typeof e.code === "number") return new NanoError(FROM_STATUS[e.code as status] ?? "INTERNAL", e.details || `gRPC error ${e.code}`);
  return new NanoError("INTERNAL", err instanceof Error ? err.message : String(err));
}

/** The innermost reason grpc-js gives, without its "No connection established. Last error:" wrapping. */
function lastError(details: string): string {
  const inner = /Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(details)?.[1] ?? details;
  return inner.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/, "").replace(/[.\s]+$/, "").slice(0, 200) || "the connection failed";
}
