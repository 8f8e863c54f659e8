/** Error kinds a caller can act on; the daemon's one mapper turns each into a gRPC status. */
export type ErrorCode =
  | "NOT_FOUND"
  | "INVALID_ARGUMENT"
  | "FAILED_PRECONDITION"
  | "RESOURCE_EXHAUSTED"
  | "CANCELLED"
  | "UNAVAILABLE"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "OUT_OF_RANGE"
  | "INTERNAL";

/** An error whose message is one sentence for the user: what was wrong and what to do. */
export class NanoError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "NanoError";
  }
}

/** Shorthand constructors so call sites read as the sentence they produce. */
export const fail = {
  notFound: (msg: string) => new NanoError("NOT_FOUND", msg),
  invalid: (msg: string) => new NanoError("INVALID_ARGUMENT", msg),
  precondition: (msg: string) => new NanoError("FAILED_PRECONDITION", msg),
  exhausted: (msg: string) => new NanoError("RESOURCE_EXHAUSTED", msg),
  cancelled: (msg: string) => new NanoError("CANCELLED", msg),
  unavailable: (msg: string) => new NanoError("UNAVAILABLE", msg),
  unauthenticated: (msg: string) => new NanoError("UNAUTHENTICATED", msg),
  denied: (msg: string) => new NanoError("PERMISSION_DENIED", msg),
  internal: (msg: string) => new NanoError("INTERNAL", msg),
  outOfRange: (msg: string) => new NanoError("OUT_OF_RANGE", msg),
};
