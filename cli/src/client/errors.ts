import { status, type ServiceError } from "@grpc/grpc-js";
import { NanoError, type ErrorCode } from "@nanollm/shared";

const FROM_STATUS: Partial<Record<status, ErrorCode>> = {
  [status.NOT_FOUND]: "NOT_FOUND",
  [status.INVALID_ARGUMENT]: "INVALID_ARGUMENT",
  [status.FAILED_PRECONDITION]: "FAILED_PRECONDITION",
  [status.RESOURCE_EXHAUSTED]: "RESOURCE_EXHAUSTED",
  [status.CANCELLED]: "CANCELLED",
  [status.UNAVAILABLE]: "UNAVAILABLE",
  [status.UNAUTHENTICATED]: "UNAUTHENTICATED",
  [status.PERMISSION_DENIED]: "PERMISSION_DENIED",
};

/** A gRPC failure as the daemon's own sentence; "nothing listening" says how to start one. */
export function toClientError(err: unknown, host: string): NanoError {
  if (err instanceof NanoError) return err;
  const e = err as Partial<ServiceError>;
  if (e.code === status.UNAVAILABLE && /ECONNREFUSED|No connection established|connect|Name resolution/i.test(e.details ?? "")) {
    return new NanoError("UNAVAILABLE", `Nothing is listening at ${host}; start the daemon with \`nanollm serve\` (or pass --host).`);
  }
  if (typeof e.code === "number") return new NanoError(FROM_STATUS[e.code as status] ?? "INTERNAL", e.details || `gRPC error ${e.code}`);
  return new NanoError("INTERNAL", err instanceof Error ? err.message : String(err));
}
