import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { NanoError, type ErrorCode } from "@nanollm/shared";

const CODES: Record<ErrorCode, status> = {
  NOT_FOUND: status.NOT_FOUND,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  CANCELLED: status.CANCELLED,
  UNAVAILABLE: status.UNAVAILABLE,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  OUT_OF_RANGE: status.OUT_OF_RANGE,
  INTERNAL: status.INTERNAL,
};

// Status details travel in HTTP/2 trailers; a message echoing a huge client string must stay small.
const MAX_DETAILS = 500;

function clip(message: string): string {
  const oneLine = message.replace(/[\u0000-\u001f\u007f]/g, " ");
  return oneLine.length <= MAX_DETAILS ? oneLine : `${oneLine.slice(0, MAX_DETAILS - 1)}…`;
}

/** The one place an error becomes a gRPC status; anything untyped is logged and hidden. */
export function toServiceError(err: unknown, log: (line: string) => void): Partial<ServiceError> {
  if (err instanceof NanoError) return { code: CODES[err.code], details: clip(err.message), metadata: new Metadata() };
  log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  const why = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return { code: status.INTERNAL, details: clip(`The daemon failed unexpectedly (${why}); see its log.`), metadata: new Metadata() };
}
